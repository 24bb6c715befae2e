"""`toolgym synth report`: what a synthesized corpus holds, as markdown and as self-contained HTML with inline
SVG bar charts (counts by category, domain and difficulty, prompt lengths, tools per environment, drop reasons,
shortcut solve rates before the gate, diversity per category, sample tasks)."""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from pathlib import Path

from toolgym.envs.shards import read_task_shards

from .family import distinctness_parts
from .shortcuts import STOPWORDS

SKELETON_GOAL = 0.02
"""The largest masked skeleton should hold at most this share of a category's tasks (issue 14)."""
_MASKS = (
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), " <email> "),
    (re.compile(r'"[^"\n]*"|“[^”\n]*”|`[^`\n]*`|(?<!\w)\'[^\'\n]*\'(?!\w)'), " <quoted> "),
    (re.compile(r"\b(?=[A-Za-z-]*\d)[A-Za-z]{1,4}-?\d{2,}\b"), " <id> "),
    (re.compile(r"\d+(?:[.,]\d+)*"), " <n> "),
)
_TOKEN = re.compile(r"<\w+>|[A-Za-z][\w'-]*|[^\sA-Za-z]")


def domain_words(env_json: dict) -> set[str]:
    """The words an environment's own vocabulary supplies (its tool names and descriptions, its domain): what
    differs between two renamed copies of one task, so a skeleton masks it."""
    text = " ".join(
        [env_json.get("domain", "")]
        + [t["function"]["name"] + " " + t["function"].get("description", "") for t in env_json["tools"]]
    )
    words = set(re.findall(r"[a-z]+", text.replace("_", " ").lower())) - STOPWORDS
    return words | {w + "s" for w in words} | {w + "es" for w in words}


def skeleton(prompt: str, nouns: set[str]) -> str:
    """A prompt with entities, numbers, ids, quoted strings, emails, every capitalized word and the domain's
    nouns masked, runs of one mask collapsed: two prompts share it when they differ only in what they name."""
    for pattern, mask in _MASKS:
        prompt = pattern.sub(mask, prompt)
    out: list[str] = []
    for tok in _TOKEN.findall(prompt):
        if tok[0].isupper() or tok.lower() in nouns:
            tok = "<w>"
        elif not tok.startswith("<"):
            tok = tok.lower()
        if not (out and tok.startswith("<") and out[-1] == tok):
            out.append(tok)
    return " ".join(out)


def _answer(t) -> str:
    expected = t.params.get("expected")
    if expected is not None and t.verifier != "check_state":
        return json.dumps(expected, sort_keys=True)
    return json.dumps([t.verifier, t.answer, [c.name for c in t.solution]], sort_keys=True)


def diversity(out: str | Path, tasks: list) -> dict:
    """Per category: tasks, distinct masked skeletons and the largest one's share (goal <= SKELETON_GOAL),
    distinct schema shapes (the environments' provenance family), tool sets, rule sets and answers."""
    out = Path(out)
    envs: dict[str, dict] = {}
    for eid in sorted({t.env_id for t in tasks}):
        env_dir = out / "envs" / eid
        spec = json.loads((env_dir / "env.json").read_text())
        tool_set, rules, _ = distinctness_parts(env_dir)
        envs[eid] = {
            "nouns": domain_words(spec),
            "shape": spec["provenance"]["family"],
            "tool_set": tool_set,
            "rules": rules,
        }
    by_cat: dict[str, list] = {}
    for t in tasks:
        by_cat.setdefault(t.category, []).append(t)
    result = {}
    for cat, group in sorted(by_cat.items()):
        skeletons = Counter(skeleton(t.prompt[0], envs[t.env_id]["nouns"]) for t in group)
        ids = {t.env_id for t in group}
        top = skeletons.most_common(10)
        result[cat] = {
            "tasks": len(group),
            "skeletons": len(skeletons),
            "largest_skeleton_share": round(top[0][1] / len(group), 4),
            "top10_skeleton_share": round(sum(n for _, n in top) / len(group), 4),
            "largest_skeleton": top[0][0],
            "schema_shapes": len({envs[e]["shape"] for e in ids}),
            "tool_sets": len({envs[e]["tool_set"] for e in ids}),
            "rule_sets": len({envs[e]["rules"] for e in ids}),
            "answers": len({_answer(t) for t in group}),
        }
    return result


def _buckets(values: list[int], width: int) -> dict[str, int]:
    c = Counter((v // width) * width for v in values)
    return {f"{k}-{k + width - 1}": c[k] for k in sorted(c)}


def collect(out: str | Path) -> dict:
    out = Path(out)
    manifest_path = out / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path} is missing; run `toolgym synth tasks --out {out}` first")
    manifest = json.loads(manifest_path.read_text())
    tasks = read_task_shards(out / "tasks")
    tools = [
        len(json.loads((out / "envs" / e / "env.json").read_text())["tools"]) for e in manifest["env_hashes"]
    ]
    return {
        "manifest": manifest,
        "tables": {
            "environments by category": manifest.get("envs_by_category", {}),
            "by category": manifest["by_category"],
            "by difficulty": manifest["by_difficulty"],
            "by category and difficulty": manifest.get("by_category_difficulty", {}),
            "by domain": manifest["by_domain"],
            "prompt length (words)": _buckets([len(t.prompt[0].split()) for t in tasks], 5),
            "reference solution length (calls)": dict(
                sorted(Counter(str(len(t.solution)) for t in tasks).items())
            ),
            "tools per environment": dict(sorted(Counter(str(n) for n in tools).items())),
            "validation drop reasons": manifest["drop_reasons"],
        },
        "distinctness": manifest.get("distinctness", {}).get("by_category", {}),
        "measured": measured_tables(manifest, tasks, out),
        "samples": [
            {
                "id": t.id,
                "category": t.category,
                "difficulty": t.difficulty,
                "prompt": t.prompt[0],
                "calls": [c.name for c in t.solution],
            }
            for t in _samples(tasks, per_category=3)
        ],
    }


def _samples(tasks: list, per_category: int) -> list:
    """A few tasks of every category, spread evenly over it (the first of each category alone would be one
    environment's)."""
    by_cat: dict[str, list] = {}
    for t in tasks:
        by_cat.setdefault(t.category, []).append(t)
    out = []
    for group in by_cat.values():
        out += group[:: max(1, len(group) // per_category)][:per_category]
    return out


DISTINCT_COLUMNS = ("environments", "tool_sets", "rule_sets", "data_sets")


def _distinct_rows(data: dict) -> list[list[str]]:
    """category, environments, distinct tool sets, rule sets, data sets."""
    return [
        [cat] + [str(row.get(c, "")) for c in DISTINCT_COLUMNS] for cat, row in data["distinctness"].items()
    ]


def _pct(n: int, d: int) -> str:
    return f"{100 * n / d:.1f}%" if d else "-"


def shortcut_table(manifest: dict) -> tuple[list[str], list[list[str]]]:
    """Shortcut solve rates before the gate: per family and family level, the share of the candidates that
    reached the gate each shortcut solved, and the share any solved."""
    sc = manifest.get("shortcuts", {})
    names = sc.get("names", [])
    rows = []
    for level, row in sc.get("by_family_level", {}).items():
        n = row.get("candidates", 0)
        rows.append([level, str(n)] + [_pct(row.get(k, 0), n) for k in names] + [_pct(row.get("any", 0), n)])
    return ["family/level", "candidates", *names, "any"], rows


def diversity_table(manifest: dict, div: dict | None = None) -> tuple[list[str], list[list[str]]]:
    """Diversity per category (masked skeletons, the largest's share, schema shapes, tool and rule sets,
    answers)."""
    head = ["category", "tasks", "skeletons", "largest", "top 10", "schema shapes", "tool sets", "rule sets"]
    head.append("answers")
    rows = []
    for cat, d in (div if div is not None else manifest.get("diversity", {})).items():
        rows.append(
            [cat, str(d["tasks"]), str(d["skeletons"])]
            + [f"{100 * d[k]:.1f}%" for k in ("largest_skeleton_share", "top10_skeleton_share")]
            + [str(d[k]) for k in ("schema_shapes", "tool_sets", "rule_sets", "answers")]
        )
    return head, rows


def difficulty_table(manifest: dict) -> tuple[list[str], list[list[str]]]:
    """The computed levels per category: each level's share and mean reference calls."""
    rows = []
    for cat, d in manifest.get("difficulty", {}).get("by_category", {}).items():
        for lv, row in d["levels"].items():
            rows.append(
                [cat, lv, str(row["tasks"]), f"{100 * row['share']:.1f}%", str(row["mean_reference_calls"])]
            )
    return ["category", "level", "tasks", "share", "mean reference calls"], rows


def drops_table(manifest: dict) -> tuple[list[str], list[list[str]]]:
    """Drops by reason, with the share of all candidates."""
    n = manifest.get("candidates", 0)
    rows = [
        [k, str(v), _pct(v, n)]
        for k, v in sorted(manifest.get("drop_reasons", {}).items(), key=lambda x: -x[1])
    ]
    return ["reason", "candidates", "share"], rows


def md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def measured_tables(manifest: dict, tasks: list, out: Path) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The measured tables, titled: shortcut solve rates, drops, computed levels, diversity (computed from the
    tasks when an older manifest lacks it)."""
    div = (manifest.get("diversity") or diversity(out, tasks)) if tasks else {}
    return {
        "shortcut solve rates before the gate (share of candidates)": shortcut_table(manifest),
        "drops by reason": drops_table(manifest),
        "computed difficulty": difficulty_table(manifest),
        f"diversity (masked skeletons; goal: largest <= {SKELETON_GOAL:.0%})": diversity_table(manifest, div),
    }


def _versions(m: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()) or m.get("version", "?")


def _header(m: dict, versions: str | None = None) -> str:
    """What the corpus is: a synthesized one (seed, scale, candidates), or one a model-in-the-loop filter kept."""
    head = f"seed {m.get('seed', '?')}, scale {m.get('scale', '?')}"
    head += f", family versions {versions}" if versions else ""
    admitted = f" admitted of {m['candidates']} candidates" if "candidates" in m else ""
    text = f"{head}: {m['envs']} environments, {m['tasks']} tasks{admitted}."
    if m.get("filter"):
        f = m["filter"]
        policy = f.get("policy")
        name = policy.get("policy", "?") if isinstance(policy, dict) else policy
        text += f" Kept by a {name} policy's pass@{f.get('k', '?')} ({f.get('keep', '?')})."
    return text


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def markdown(data: dict) -> str:
    m = data["manifest"]
    lines = [
        "# Synthesized corpus",
        "",
        _header(m, _versions(m)),
    ]
    for title, table in data["tables"].items():
        lines += ["", f"## {title.capitalize()}", "", "| value | count |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in table.items()]
    if data["distinctness"]:
        lines += ["", "## Distinct environments (no two share tool set + rules + data)", ""]
        lines += [
            "| category | environments | tool sets | rule sets | data sets |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += ["| " + " | ".join(r) + " |" for r in _distinct_rows(data)]
    for title, (head, rows) in data.get("measured", {}).items():
        if rows:
            lines += ["", f"## {title[0].upper()}{title[1:]}", "", md_table(head, rows)]
    lines += ["", "## Sample tasks", ""]
    for s in data["samples"]:
        lines.append(
            f"- `{s['id']}` ({s['category']}, difficulty {s['difficulty']}): {_short(s['prompt'])} — "
            f"{', '.join(s['calls'])}"
        )
    return "\n".join(lines) + "\n"


def _svg(table: dict) -> str:
    if not table:
        return ""
    top = max(table.values()) or 1
    rows = list(table.items())[:70]
    h = 16 * len(rows) + 4
    bars = []
    for i, (k, v) in enumerate(rows):
        w = int(300 * v / top)
        y = 16 * i + 2
        bars.append(
            f'<text x="0" y="{y + 11}" font-size="11">{html.escape(str(k))}</text>'
            f'<rect x="190" y="{y}" width="{w}" height="12" fill="#4a7ab5"/>'
            f'<text x="{195 + w}" y="{y + 11}" font-size="11">{v}</text>'
        )
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="560" height="{h}">{"".join(bars)}</svg>'


def html_report(data: dict) -> str:
    m = data["manifest"]
    parts = [
        "<!doctype html><meta charset='utf-8'><title>toolgym synth report</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}td{padding:2px 8px}</style>",
        "<h1>Synthesized corpus</h1>",
        f"<p>{html.escape(_header(m))}</p>",
    ]
    for title, table in data["tables"].items():
        rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{v}</td></tr>" for k, v in table.items())
        parts.append(f"<h2>{html.escape(title.capitalize())}</h2>{_svg(table)}<table>{rows}</table>")
    if data["distinctness"]:
        head = "".join(
            f"<th>{h}</th>" for h in ("category", "environments", "tool sets", "rule sets", "data sets")
        )
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in _distinct_rows(data)
        )
        parts.append(f"<h2>Distinct environments</h2><table><tr>{head}</tr>{body}</table>")
    for title, (head, rows) in data.get("measured", {}).items():
        if rows:
            th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
            parts.append(
                f"<h2>{html.escape(title[0].upper() + title[1:])}</h2><table><tr>{th}</tr>{body}</table>"
            )
    parts.append("<h2>Sample tasks</h2><ul>")
    for s in data["samples"]:
        parts.append(
            f"<li><code>{html.escape(s['id'])}</code> ({s['category']}, difficulty {s['difficulty']}): "
            f"{html.escape(_short(s['prompt']))} <i>{html.escape(', '.join(s['calls']))}</i></li>"
        )
    return "".join(parts) + "</ul>\n"


def write_report(out: str | Path, md: str | Path | None = None, html_out: str | Path | None = None) -> str:
    """The markdown report (also written to `md`), and the HTML one to `html_out` when given."""
    data = collect(out)
    text = markdown(data)
    if md:
        Path(md).write_text(text)
    if html_out:
        Path(html_out).write_text(html_report(data))
    return text
