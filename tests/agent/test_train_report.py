"""The training report's page: every measured category in the table and the plot, a legend that fits, no line
drawn twice."""

from __future__ import annotations

import re

from toolgym.agent.train_report import to_html


def _held(**rates: tuple[int, int]) -> dict:
    return {c: {"successes": s, "episodes": n, "rate": s / n} for c, (s, n) in rates.items()}


def _grpo(held_outs: list[dict]) -> dict:
    its = [{"iteration": 0, "held_out": held_outs[0]}]
    for i, h in enumerate(held_outs[1:], 1):
        its.append(
            {
                "iteration": i,
                "episodes": 8,
                "train_reward": 0.25,
                "groups_with_signal": 1,
                "kl": 0.01,
                "masked_samples": 0,
                "held_out": h,
            }
        )
    return {"job": "grpo", "model": "m", "iterations": its}


def test_one_category_is_one_line_and_one_column():
    page = to_html(_grpo([_held(search=(6, 31), overall=(6, 31)), _held(search=(13, 31), overall=(13, 31))]))
    assert "held-out search" in page and "held-out overall" not in page
    assert "41.9% (13/31)" in page and page.count("<polyline") == 2  # train reward and search


def test_every_category_has_a_column_and_the_legend_fits():
    rates = _held(code_interpreter=(1, 4), search=(2, 4), overall=(3, 8))
    page = to_html(_grpo([rates, rates, rates]))
    headers = re.findall(r"<th>held-out ([^<]+)</th>", page)
    assert headers == ["code_interpreter", "search", "overall"]
    width = float(re.search(r'<svg[^>]* width="([\d.]+)"', page).group(1))
    legend_x = max(float(x) for x in re.findall(r'<text x="([\d.]+)"[^>]*fill=', page))
    # the longest name, at up to 7px a character, ends inside the picture
    assert legend_x + 7 * len("held-out code_interpreter") <= width
    ticks = re.findall(r'text-anchor="middle" font-size="10">(\d+)</text>', page)
    assert ticks == ["0", "1", "2"]
