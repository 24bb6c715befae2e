"""The training report as one self-contained HTML page: held-out success before and after by category with
intervals (SFT), the loss curve, and per GRPO iteration the reward on training tasks and held-out success."""

from __future__ import annotations

import html
from typing import Any

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#f4f4f4}"
    "td:first-child,th:first-child{text-align:left}.up{color:#060}.down{color:#a00}"
)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _line_svg(title: str, series: dict[str, list[tuple[float, float]]], y_max: float | None = None) -> str:
    """Lines over x (steps or iterations); one colour per series, a legend right of the plot (wide enough for
    its longest name), the y axis labelled at the ends, the x axis at every point when there are few."""
    points = [p for s in series.values() for p in s]
    if not points:
        return ""
    plot_w, h, pad = 560, 220, 40
    # an 11px sans-serif character is at most about 7px wide: the legend's names are never clipped
    w = plot_w + 7 * max(len(name) for name in series)
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0 = min(0.0, min(p[1] for p in points))
    y1 = y_max if y_max is not None else max(p[1] for p in points)
    y1 = y1 if y1 > y0 else y0 + 1.0

    def sx(x: float) -> float:
        return pad + (plot_w - 2 * pad) * ((x - x0) / (x1 - x0) if x1 > x0 else 0.5)

    def sy(y: float) -> float:
        return h - pad - (h - 2 * pad) * (y - y0) / (y1 - y0)

    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img">',
        f'<text x="{w / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>',
        f'<line x1="{pad}" y1="{h - pad}" x2="{plot_w - pad}" y2="{h - pad}" stroke="#888"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#888"/>',
        f'<text x="{pad - 4}" y="{sy(y1) + 4}" text-anchor="end" font-size="10">{y1:.3g}</text>',
        f'<text x="{pad - 4}" y="{sy(y0) + 4}" text-anchor="end" font-size="10">{y0:.3g}</text>',
    ]
    xs = sorted({p[0] for p in points})
    parts += [
        f'<text x="{sx(x)}" y="{h - pad + 14}" text-anchor="middle" font-size="10">{x:g}</text>'
        for x in (xs if len(xs) <= 12 else (x0, x1))
    ]
    for n, (name, pts) in enumerate(series.items()):
        colour = colours[n % len(colours)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>' for x, y in pts]
        parts.append(
            f'<text x="{plot_w - pad + 8}" y="{pad + 14 * n}" font-size="11" fill="{colour}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _compare_table(compare: dict[str, dict]) -> str:
    rows = [
        "<table><tr><th>category</th><th>episodes</th><th>before (95% CI)</th><th>after (95% CI)</th>"
        "<th>difference (95% CI)</th></tr>"
    ]
    for c, g in compare.items():
        lo, hi = g["diff_ci_low"], g["diff_ci_high"]
        cls = "up" if lo > 0 else "down" if hi < 0 else ""
        rows.append(
            f"<tr><td>{html.escape(c)}</td><td>{g['episodes']}</td>"
            f"<td>{_pct(g['before'])} ({_pct(g['before_ci'][0])}-{_pct(g['before_ci'][1])})</td>"
            f"<td>{_pct(g['after'])} ({_pct(g['after_ci'][0])}-{_pct(g['after_ci'][1])})</td>"
            f'<td class="{cls}">{100 * g["diff"]:+.1f} ({100 * lo:+.1f} to {100 * hi:+.1f})</td></tr>'
        )
    return "".join(rows) + "</table>"


def _success_table(title: str, groups: dict[str, dict]) -> str:
    rows = [
        f"<h3>{html.escape(title)}</h3><table><tr><th>category</th><th>episodes</th><th>success (95% CI)</th></tr>"
    ]
    for c, g in groups.items():
        rows.append(
            f"<tr><td>{html.escape(c)}</td><td>{g['episodes']}</td>"
            f"<td>{_pct(g['rate'])} ({_pct(g['ci'][0])}-{_pct(g['ci'][1])})</td></tr>"
        )
    return "".join(rows) + "</table>"


def to_html(report: dict[str, Any]) -> str:
    job = report.get("job", "train")
    body = [
        f"<h1>toolgym train {html.escape(job)}</h1>",
        f"<p>model: <code>{html.escape(str(report.get('model')))}</code></p>",
    ]
    if job == "sft":
        data = report.get("data", {})
        sft = report.get("sft", {})
        body.append(
            f"<p>{data.get('rows', 0)} trajectories, {data.get('sequences', 0)} sequences, {data.get('tokens', 0)} "
            f"tokens ({data.get('trained_tokens', 0)} trained); {sft.get('steps', 0)} steps in {sft.get('seconds', 0)} s, "
            f"{sft.get('tokens_per_s', 0)} tokens/s.</p>"
        )
        if "compare" in report:
            body += [
                "<h2>Held-out success, before and after (same tasks and seeds)</h2>",
                _compare_table(report["compare"]),
            ]
        else:
            for key, title in (("before", "Held-out before"), ("after", "Held-out after")):
                if key in report:
                    body.append(_success_table(title, report[key]))
        losses = sft.get("losses") or []
        if losses:
            body.append(_line_svg("SFT loss per step", {"loss": list(enumerate(losses, 1))}))
    else:
        its = report.get("iterations", [])
        reward = [(e["iteration"], e["train_reward"]) for e in its if "train_reward" in e]
        # one category measured: "overall" is the same line, drawn over it and listed twice; it goes
        kinds = sorted({c for e in its for c in (e.get("held_out") or {}) if c != "overall"})
        columns = kinds + ["overall"] if len(kinds) > 1 else kinds or ["overall"]
        held: dict[str, list[tuple[float, float]]] = {}
        for e in its:
            for c in columns:
                if c in (e.get("held_out") or {}):
                    held.setdefault(f"held-out {c}", []).append((e["iteration"], e["held_out"][c]["rate"]))
        body.append(
            _line_svg(
                "Reward on training tasks and held-out success per iteration",
                {"train reward": reward, **held},
                y_max=1.0,
            )
        )
        rows = [
            "<table><tr><th>iteration</th><th>episodes</th><th>train reward</th><th>groups with signal</th>"
            "<th>KL</th><th>masked samples</th>"
            + "".join(f"<th>held-out {html.escape(c)}</th>" for c in columns)
            + "</tr>"
        ]
        for e in its:
            reward_cell = f"{e['train_reward']:.3f}" if "train_reward" in e else ""
            kl_cell = f"{e['kl']:.4f}" if "kl" in e else ""
            held_cells = ""
            for c in columns:
                g = (e.get("held_out") or {}).get(c)
                held_cells += (
                    f"<td>{_pct(g['rate'])} ({g['successes']}/{g['episodes']})</td>" if g else "<td></td>"
                )
            rows.append(
                f"<tr><td>{e['iteration']}</td><td>{e.get('episodes', '')}</td><td>{reward_cell}</td>"
                f"<td>{e.get('groups_with_signal', '')}</td><td>{kl_cell}</td>"
                f"<td>{e.get('masked_samples', '')}</td>{held_cells}</tr>"
            )
        body.append("".join(rows) + "</table>")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>toolgym train {html.escape(job)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )
