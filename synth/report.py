"""`toolgym synth report`: what a synthesized corpus holds, as markdown and as self-contained HTML with inline
SVG bar charts (counts by category, domain and difficulty, prompt lengths, tools per environment, drop reasons,
sample tasks)."""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path

from toolgym.envs.shards import read_task_shards


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


def _versions(m: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()) or m.get("version", "?")


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def markdown(data: dict) -> str:
    m = data["manifest"]
    lines = [
        "# Synthesized corpus",
        "",
        f"seed {m['seed']}, scale {m['scale']}, family versions {_versions(m)}: {m['envs']} environments, "
        f"{m['tasks']} tasks admitted of {m['candidates']} candidates.",
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
        f"<p>seed {m['seed']}, scale {html.escape(m['scale'])}: {m['envs']} environments, {m['tasks']} tasks "
        f"admitted of {m['candidates']} candidates.</p>",
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
