"""Verifiers of the code-interpreter environment: the final answer must hold the right number, computed with
the Python tool (an answer given without running code scores 0)."""

from __future__ import annotations

import math
import re

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")


def final_number(answer) -> float | None:
    """The number in \\boxed{...} if there is one, else the last number in the answer."""
    text = str(answer or "")
    boxed = re.findall(r"\\boxed\{([^}]*)\}", text)
    found = NUMBER.findall(boxed[-1] if boxed else text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def check_number(ctx, answer, calls, expected: float, rel_tol: float = 1e-6):
    """Reward 1 when the answer's number equals `expected` (relative tolerance) and Python ran successfully."""
    if not any(c["name"] == "python" and c.get("ok") for c in calls):
        return 0.0, "the answer was not computed with the python tool"
    got = final_number(answer)
    if got is None:
        return 0.0, "the answer holds no number"
    if not math.isclose(got, expected, rel_tol=rel_tol, abs_tol=1e-9):
        return 0.0, f"the answer {got:g} is wrong"
    return 1.0, "the number is right"
