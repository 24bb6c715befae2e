"""Evaluation of a rollout: success rates and unbiased pass@k with confidence intervals, per-task flip rates,
tool-use metrics, a comparison of two runs, rescoring from stored trajectories, markdown and HTML reports.

Rows whose episode failed for infrastructure reasons are counted apart and left out of every agent metric.
A run that stopped before it finished is evaluated on what it recorded and flagged as partial ("partial: 120
of 300 episodes") in every report.
"""

from __future__ import annotations

import html
import json
import math
import os
import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from toolgym.envs.runtime import Script

GROUPS = ("category", "domain", "difficulty")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c successes: 1 - C(n-c, k) / C(n, k) (Chen et al., 2021)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per task, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sound at 0 and 1, unlike the normal approximation)."""
    if n == 0:
        return (0.0, 0.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap(values: list[float], seed: int = 0, rounds: int = 1000) -> tuple[float, float]:
    """95% percentile bootstrap interval of a mean over tasks (seeded: the same report twice)."""
    if not values:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(rounds))
    return (means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1])


def _per_task(rows: list[dict]) -> dict[str, tuple[int, int]]:
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        out[r["task_id"]][0] += 1
        out[r["task_id"]][1] += bool(r["success"])
    return {k: (n, c) for k, (n, c) in out.items()}


def _group_metrics(rows: list[dict], ks: Iterable[int]) -> dict[str, Any]:
    tasks = _per_task(rows)
    successes = sum(bool(r["success"]) for r in rows)
    n_min = min((n for n, _ in tasks.values()), default=0)
    out: dict[str, Any] = {
        "episodes": len(rows),
        "tasks": len(tasks),
        "success_rate": successes / len(rows),
        "success_ci": wilson(successes, len(rows)),
    }
    for k in ks:
        if k <= n_min:
            values = [pass_at_k(n, c, k) for n, c in tasks.values()]
            out[f"pass@{k}"] = sum(values) / len(values)
            out[f"pass@{k}_ci"] = bootstrap(values, seed=k)
    turns = [t for r in rows for t in turn_rewards(r)]
    if turns:
        # Multi-turn tasks: how many user turns passed, apart from whole tasks (a task passes when all do).
        passed = sum(t >= 1.0 for t in turns)
        out["turn_success_rate"] = passed / len(turns)
        out["turn_success_ci"] = wilson(passed, len(turns))
        out["turns"] = len(turns)
    multi = [(n, c) for n, c in tasks.values() if n >= 2]
    if multi:
        # The chance that two samples of a task disagree, averaged over tasks: how stable the policy is.
        out["flip_rate"] = sum(2 * c * (n - c) / (n * (n - 1)) for n, c in multi) / len(multi)
        out["tasks_flipping"] = sum(0 < c < n for n, c in multi) / len(multi)
    return out


def turn_rewards(row: dict) -> list[float]:
    """The per-turn rewards of a row's verdict (empty where its verifier judged the episode as a whole)."""
    verdict = row.get("verdict")
    if not isinstance(verdict, dict) or not isinstance(verdict.get("turns"), list):
        return []
    return [float(t.get("reward", 0.0)) for t in verdict["turns"] if isinstance(t, dict)]


def by_turn(rows: list[dict]) -> dict[str, dict]:
    """Success of the n-th user turn over the episodes that had one: {"1": {"turns", "success_rate", ...}}."""
    buckets: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        for i, reward in enumerate(turn_rewards(r)):
            buckets[i + 1].append(reward)
    out = {}
    for index, rewards in sorted(buckets.items()):
        passed = sum(x >= 1.0 for x in rewards)
        out[str(index)] = {
            "turns": len(rewards),
            "success_rate": passed / len(rewards),
            "success_ci": wilson(passed, len(rewards)),
        }
    return out


def tool_use(rows: list[dict]) -> dict[str, Any]:
    errors: Counter = Counter()
    for r in rows:
        errors.update({k: v for k, v in r["errors"].items() if v})
    calls = sum(r["n_tool_calls"] for r in rows)
    bad_calls = errors["unknown_tool"] + errors["invalid_arguments"]
    steps = sorted(r["n_steps"] for r in rows)
    return {
        "tool_calls": calls,
        "valid_call_rate": (calls - bad_calls) / calls if calls else None,
        "tool_error_rate": errors["tool_error"] / calls if calls else None,
        "unknown_tool": errors["unknown_tool"],
        "invalid_arguments": errors["invalid_arguments"],
        "errors_by_kind": dict(sorted(errors.items())),
        "parse_errors_per_episode": errors["parse"] / len(rows),
        "steps_mean": sum(steps) / len(rows),
        "steps_p50": steps[len(steps) // 2],
        "prompt_tokens_mean": sum(r["prompt_tokens"] for r in rows) / len(rows),
        "completion_tokens_mean": sum(r["completion_tokens"] for r in rows) / len(rows),
        "stop_reasons": dict(sorted(Counter(r["stop_reason"] for r in rows).items())),
    }


def evaluate(
    rows: list[dict], ks: Iterable[int] = (1, 2, 4, 8, 16), *, progress: dict | None = None
) -> dict[str, Any]:
    """The report of one run (rows from `load_trajectories`). `progress` (`run_progress(run_dir, rows)`: planned
    against done, partial or not) goes into the report as `run`, and a partial run is flagged in every form."""
    ks = sorted(set(ks))
    agent = [r for r in rows if r["status"] != "infra_error"]
    report: dict[str, Any] = {
        "episodes": len(rows),
        "infra_errors": len(rows) - len(agent),
        "infra_retries": sum(r["infra_retries"] for r in rows),
        "timeouts": sum(r["status"] == "timeout" for r in rows),
        "agent_env_errors": sum(r["status"] == "ok" and r["stop_reason"] == "env_error" for r in rows),
        "policy": sorted({r["policy"] for r in rows}),
    }
    if progress is not None:
        report["run"] = dict(progress)
    if not agent:
        return report
    report["overall"] = _group_metrics(agent, ks)
    for key in GROUPS:
        buckets: dict[str, list[dict]] = defaultdict(list)
        for r in agent:
            buckets[str(r[key])].append(r)
        report[f"by_{key}"] = {k: _group_metrics(v, ks) for k, v in sorted(buckets.items())}
    if any(turn_rewards(r) for r in agent):
        report["by_turn"] = by_turn(agent)
    report["tool_use"] = tool_use(agent)
    report["flips"] = sorted(
        ({"task_id": t, "samples": n, "successes": c} for t, (n, c) in _per_task(agent).items() if 0 < c < n),
        key=lambda x: x["task_id"],
    )[:50]
    return report


def compare(a_rows: list[dict], b_rows: list[dict]) -> dict[str, Any]:
    """Run B against run A on the tasks both ran: per-group deltas and a paired per-task interval."""
    a_tasks = _per_task([r for r in a_rows if r["status"] != "infra_error"])
    b_tasks = _per_task([r for r in b_rows if r["status"] != "infra_error"])
    shared = sorted(set(a_tasks) & set(b_tasks))
    deltas = [b_tasks[t][1] / b_tasks[t][0] - a_tasks[t][1] / a_tasks[t][0] for t in shared]
    category = {r["task_id"]: r["category"] for r in a_rows}
    by_cat: dict[str, list[float]] = defaultdict(list)
    for t, d in zip(shared, deltas, strict=True):
        by_cat[category[t]].append(d)
    return {
        "shared_tasks": len(shared),
        "success_delta": sum(deltas) / len(deltas) if deltas else 0.0,
        "success_delta_ci": bootstrap(deltas),
        "better": sum(d > 0 for d in deltas),
        "worse": sum(d < 0 for d in deltas),
        "by_category": {c: sum(v) / len(v) for c, v in sorted(by_cat.items())},
    }


# --- rescoring --------------------------------------------------------------------------------------------


def recorded_turns(messages: list[dict]) -> list[dict]:
    """The user turns of a recorded conversation: {"calls", "answer"} each, in order. A turn begins where the
    user (or the system, in a turn given as a message list) speaks after the agent; its answer is its last
    assistant text without calls (None where the turn's step budget ended it)."""
    turns: list[dict] = []
    agent_spoke = True
    for m in messages:
        if m["role"] in ("assistant", "tool"):
            agent_spoke = True
            if m["role"] == "assistant":
                calls = [c["function"] for c in m.get("tool_calls") or []]
                turns[-1]["calls"] += calls
                turns[-1]["answer"] = None if calls else m.get("content")
        elif agent_spoke:
            turns.append({"calls": [], "answer": None})
            agent_spoke = False
    return turns


def recorded_script(row: dict) -> Script | None:
    """The scripted episode a stored trajectory recorded: its tool calls in order and its final answer (turn by
    turn, where it had several user turns); None when the episode never terminated (it scored 0 whatever the
    verifier says now)."""
    if not row.get("terminated"):
        return None
    turns = recorded_turns(row["messages"])
    calls = [c for t in turns for c in t["calls"]]
    answer = turns[-1]["answer"] if turns else None
    return Script({"id": row["task_id"]}, calls, answer, turns=turns if len(turns) > 1 else None)


def rescore(rows: list[dict], corpus, *, backend="auto") -> list[dict]:
    """Replay each stored trajectory's tool calls and answer in a fresh sandbox and re-run its verifier.

    The reward is a function of the recorded actions, so a changed verifier (or environment) can be applied to
    old runs without a model. Recorded actions are a model's, so they run only in sandboxes, and in
    environments where the agent runs code each replay gets a sandbox of its own (a verified reset between
    them). Returns the rows with `reward`/`success` replaced and `old_reward` kept."""
    from toolgym.envs import EnvLease, load_env_spec
    from toolgym.envs.lease import runs_agent_code

    tasks = {t.id: t for t in corpus.tasks}
    out = [dict(r, old_reward=r["reward"]) for r in rows]
    by_env: dict[str, list[tuple[dict, Script]]] = defaultdict(list)
    for row in out:
        script = recorded_script(row) if row["status"] != "infra_error" else None
        if row["status"] == "infra_error" or row["env_id"] not in corpus.env_dirs:
            continue
        if script is None or row["task_id"] not in tasks:
            row["reward"], row["success"] = 0.0, False
            continue
        script.task = tasks[row["task_id"]]
        by_env[row["env_id"]].append((row, script))
    lease = EnvLease(backend=backend)
    try:
        for env_id, items in sorted(by_env.items()):
            env_dir = corpus.env_dirs[env_id]
            spec = load_env_spec(env_dir)
            batches = [[it] for it in items] if runs_agent_code(spec) else [items]
            for batch in batches:
                ops = lease.open(env_dir, spec)
                lease.agent_code_runs()
                for (row, _), verdict in zip(batch, ops.replay_many([s for _, s in batch]), strict=True):
                    row["reward"] = float(verdict["reward"])
                    row["success"] = row["reward"] >= 1.0
                    if isinstance(row.get("verdict"), dict) or "turns" in verdict:
                        row["verdict"] = {
                            k: verdict[k] for k in ("reward", "reason", "turns") if k in verdict
                        }
    finally:
        lease.close()
    return out


# --- reports ----------------------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ci(ci) -> str:
    return f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _group_table(title: str, groups: dict[str, dict], ks: list[int]) -> list[str]:
    head = ["group", "episodes", "tasks", "success", "95% CI"] + [f"pass@{k}" for k in ks] + ["flip rate"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in groups.items():
        cells = [name, str(m["episodes"]), str(m["tasks"]), _pct(m["success_rate"]), _ci(m["success_ci"])]
        cells += [_pct(m.get(f"pass@{k}")) for k in ks] + [_pct(m.get("flip_rate"))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _ks(report: dict) -> list[int]:
    return sorted(int(k[5:]) for k in report.get("overall", {}) if k.startswith("pass@") and "_ci" not in k)


def to_markdown(report: dict, comparison: dict | None = None, title: str = "toolgym evaluation") -> str:
    run = report.get("run") or {}
    episodes = f"{report['episodes']}"
    if run.get("planned") is not None:
        episodes = f"{run['done']} of {run['planned']} planned"
    lines = [
        f"# {title}",
        "",
        f"policy: {', '.join(report['policy'])}; episodes: {episodes}; "
        f"infrastructure failures (excluded): {report['infra_errors']} after {report['infra_retries']} "
        f"retries; episode timeouts: {report['timeouts']}; sandboxes or env servers the agent's own code "
        f"broke (agent failures, counted): {report.get('agent_env_errors', 0)}",
        "",
    ]
    if run.get("partial"):
        lines += [f"**{run['note']}**", ""]
    if "overall" not in report:
        return "\n".join(lines + ["No agent episodes to evaluate."])
    ks = _ks(report)
    lines += _group_table("Overall", {"all": report["overall"]}, ks)
    for key in GROUPS:
        lines += _group_table(f"By {key}", report[f"by_{key}"], ks)
    if report.get("by_turn"):
        overall = report["overall"]
        lines += [
            "### By user turn (multi-turn tasks)",
            "",
            f"turns passed: {_pct(overall['turn_success_rate'])} {_ci(overall['turn_success_ci'])} of "
            f"{overall['turns']}; whole tasks pass only when every turn does",
            "",
            "| turn | episodes with it | success | 95% CI |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {i} | {m['turns']} | {_pct(m['success_rate'])} | {_ci(m['success_ci'])} |"
            for i, m in report["by_turn"].items()
        ]
        lines.append("")
    tu = report["tool_use"]
    lines += [
        "### Tool use",
        "",
        "| metric | value |",
        "|---|---|",
        f"| tool calls | {tu['tool_calls']} |",
        f"| valid-call rate | {_pct(tu['valid_call_rate'])} |",
        f"| tool-error rate | {_pct(tu['tool_error_rate'])} |",
        f"| unknown tool | {tu['unknown_tool']} |",
        f"| invalid arguments | {tu['invalid_arguments']} |",
        f"| parse errors per episode | {tu['parse_errors_per_episode']:.2f} |",
        f"| steps (mean / p50) | {tu['steps_mean']:.1f} / {tu['steps_p50']} |",
        f"| prompt / completion tokens per episode | {tu['prompt_tokens_mean']:.0f} / "
        f"{tu['completion_tokens_mean']:.0f} |",
        f"| errors by kind | {json.dumps(tu['errors_by_kind'])} |",
        f"| stop reasons | {json.dumps(tu['stop_reasons'])} |",
        "",
    ]
    if comparison:
        lines += [
            "### Comparison (B - A, paired over shared tasks)",
            "",
            "| metric | value |",
            "|---|---|",
            f"| shared tasks | {comparison['shared_tasks']} |",
            f"| success delta | {100 * comparison['success_delta']:+.1f} points "
            f"{_ci(comparison['success_delta_ci'])} |",
            f"| tasks better / worse | {comparison['better']} / {comparison['worse']} |",
        ]
        lines += [f"| delta, {c} | {100 * d:+.1f} points |" for c, d in comparison["by_category"].items()]
        lines.append("")
    return "\n".join(lines)


def _bars_svg(title: str, items: list[tuple[str, float, tuple[float, float] | None]]) -> str:
    """A horizontal bar chart (values in [0, 1], optional interval whiskers) as inline SVG."""
    row, label_w, bar_w = 22, 180, 360
    h = 30 + row * len(items)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 70}" height="{h}">',
        f'<text x="4" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
    ]
    for i, (name, value, ci) in enumerate(items):
        y = 26 + i * row
        parts.append(f'<text x="4" y="{y + 14}" font-size="12">{html.escape(name[:28])}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{bar_w * value:.1f}" height="14" fill="#4c78a8"/>'
        )
        if ci:
            parts.append(
                f'<line x1="{label_w + bar_w * ci[0]:.1f}" x2="{label_w + bar_w * ci[1]:.1f}" '
                f'y1="{y + 10}" y2="{y + 10}" stroke="#222" stroke-width="1.5"/>'
            )
        parts.append(f'<text x="{label_w + bar_w + 6}" y="{y + 14}" font-size="12">{100 * value:.1f}%</text>')
    return "".join(parts) + "</svg>"


def _histogram_svg(title: str, values: list[int]) -> str:
    counts = Counter(values)
    top = max(counts.values()) if counts else 1
    keys = list(range(min(values), max(values) + 1)) if values else []
    w, h, bw = 540, 160, max(4, min(30, 480 // max(len(keys), 1)))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 30}">',
        f'<text x="4" y="14" font-size="13" font-weight="bold">{html.escape(title)}</text>',
    ]
    for i, k in enumerate(keys):
        bh = (h - 30) * counts.get(k, 0) / top
        parts.append(
            f'<rect x="{20 + i * bw}" y="{h - bh:.1f}" width="{bw - 2}" height="{bh:.1f}" fill="#f58518"/>'
        )
        if len(keys) <= 20 or i % 5 == 0:
            parts.append(f'<text x="{20 + i * bw}" y="{h + 14}" font-size="10">{k}</text>')
    return "".join(parts) + "</svg>"


def _view_link(view_href: str, section: str, name: str) -> str:
    """A group's name as a link to the trajectory viewer filtered on that group (its filters live in the hash)."""
    key = {"Overall": None, **{f"By {g}": g for g in GROUPS}}.get(section, "")
    if key == "":
        return html.escape(name)
    target = view_href + ("#" + urlencode({key: name}) if key else "")
    return f'<a href="{html.escape(target)}">{html.escape(name)}</a>'


def to_html(
    report: dict,
    rows: list[dict],
    comparison: dict | None = None,
    title: str = "toolgym evaluation",
    view_href: str | None = None,
) -> str:
    """A self-contained HTML page: the markdown tables plus plots (inline SVG, no external assets). With
    `view_href` (the trajectory viewer's page, relative to this one), each group's row links to the viewer
    filtered on that group."""
    md = to_markdown(report, comparison, title)
    body = []
    in_table = False
    section = ""
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            if not in_table:
                body.append("<table>")
                in_table = True
                body.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells) + "</tr>")
            else:
                first = _view_link(view_href, section, cells[0]) if view_href else html.escape(cells[0])
                body.append(
                    f"<tr><td>{first}</td>"
                    + "".join(f"<td>{html.escape(c)}</td>" for c in cells[1:])
                    + "</tr>"
                )
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("**") and line.endswith("**"):
            body.append(f'<p class="partial"><strong>{html.escape(line[2:-2])}</strong></p>')
        elif line.startswith("### "):
            section = line[4:]
            body.append(f"<h3>{html.escape(section)}</h3>")
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    if view_href:
        at = next((i for i, b in enumerate(body) if not b.startswith(("<h1>", "<p"))), len(body))
        body.insert(
            at,
            f'<p class="view">episodes: <a href="{html.escape(view_href)}">open the trajectory viewer</a> '
            "(each group's name below opens it filtered on that group)</p>",
        )
    plots = []  # shown under the title and the summary line, above the tables
    if "overall" in report:
        plots.append(
            _bars_svg(
                "success rate by category (95% CI)",
                [(k, m["success_rate"], m["success_ci"]) for k, m in report["by_category"].items()],
            )
        )
        plots.append(
            _bars_svg(
                "success rate by difficulty (95% CI)",
                [
                    (f"difficulty {k}", m["success_rate"], m["success_ci"])
                    for k, m in report["by_difficulty"].items()
                ],
            )
        )
        if report.get("by_turn"):
            plots.append(
                _bars_svg(
                    "success rate by user turn (95% CI)",
                    [(f"turn {k}", m["success_rate"], m["success_ci"]) for k, m in report["by_turn"].items()],
                )
            )
        agent = [r["n_steps"] for r in rows if r["status"] != "infra_error"]
        plots.append(_histogram_svg("steps per episode", agent))
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
        "margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}svg{display:block;"
        "margin:1em 0}.partial{color:#b00020}"
    )
    # the plots go under the title and the summary lines (and the partial-run flag), above the tables
    at = next((i for i, b in enumerate(body) if not b.startswith(("<h1>", "<p"))), len(body))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body[:at] + plots + body[at:])}</body></html>"
    )


def write_reports(
    report: dict, rows: list[dict], out: Path, comparison: dict | None = None, view: Path | None = None
) -> tuple[Path, Path]:
    """report.md, report.html and report.json in `out`; `view`: the trajectory viewer's page, which the HTML
    report's rows link to (by a path relative to the report, so the two folders can move together)."""
    from .runstore import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    md, page = out / "report.md", out / "report.html"
    href = Path(os.path.relpath(Path(view).resolve(), out.resolve())).as_posix() if view else None
    atomic_write_text(md, to_markdown(report, comparison))
    atomic_write_text(page, to_html(report, rows, comparison, view_href=href))
    atomic_write_text(
        out / "report.json", json.dumps({"report": report, "comparison": comparison}, indent=2, default=list)
    )
    return md, page
