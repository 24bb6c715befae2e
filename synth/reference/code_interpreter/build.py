"""Build the code-interpreter reference environment from a seed: data files in the working folder and maths,
counting and data questions whose answers need code; each reference solution is one Python cell whose result
the builder computes by running the same code.

    python -m toolgym.synth.reference.code_interpreter.build OUT_STORE [--seed 0]
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import random
import tempfile
from pathlib import Path

from toolgym.envs.spec import EnvLimits, ToolCall

from ...family import Candidate, render_prompt
from ..common import main, write_env

ENV_ID = "code_interpreter"
HERE = Path(__file__).resolve().parent
REGIONS = ["north", "south", "east", "west"]
PRODUCTS = ["widget", "gadget", "gizmo", "doohickey"]
DESCRIPTION = (
    "You are a careful analyst with a Python tool. Use code for every computation, then give the final answer "
    "as a number in \\boxed{} without a tool call."
)


def make_state(state: Path, rng: random.Random) -> None:
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "sales.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["date", "region", "product", "units", "unit_price"])
        for i in range(400):
            month = 1 + i % 12
            w.writerow(
                [
                    f"2024-{month:02d}-{1 + rng.randrange(28):02d}",
                    rng.choice(REGIONS),
                    rng.choice(PRODUCTS),
                    rng.randint(1, 40),
                    round(rng.uniform(2, 90), 2),
                ]
            )


def task_specs(rng: random.Random) -> list[tuple[str, str]]:
    """(question, reference code) pairs; the code's last expression is the answer."""
    n = rng.randint(50_000, 150_000)
    a, b = rng.randint(3, 9), rng.randint(200, 400)
    stairs, k, m = rng.randint(25, 40), rng.randint(500, 900), rng.choice([1_000_003, 998_244_353])
    region, product, month = rng.choice(REGIONS), rng.choice(PRODUCTS), rng.randint(1, 12)
    questions = [
        ("How many prime numbers are there below {{ n }}?", {"n": n}),
        ("What is the sum of the decimal digits of {{ a }}^{{ b }}?", {"a": a, "b": b}),
        (
            "In how many ways can you climb a staircase of {{ stairs }} steps taking 1, 2 or 3 steps at a time?",
            {"stairs": stairs},
        ),
        ("What is the {{ k }}-th Fibonacci number (F(1) = F(2) = 1) modulo {{ m }}?", {"k": k, "m": m}),
        (
            "sales.csv in the working folder lists sales (units x unit_price). What was the total revenue of "
            "{{ product }}s in the {{ region }} region in month {{ month }} of 2024, rounded to 2 decimals?",
            {"product": product, "region": region, "month": month},
        ),
    ]
    code = [
        f"N = {n}\nsieve = bytearray([1]) * N\nsieve[0:2] = b'\\x00\\x00'\n"
        "for i in range(2, int(N ** 0.5) + 1):\n    if sieve[i]:\n        sieve[i*i::i] = bytearray(len(sieve[i*i::i]))\n"
        "sum(sieve)",
        f"sum(int(d) for d in str({a} ** {b}))",
        f"ways = [1, 1, 2]\nfor i in range(3, {stairs} + 1):\n    ways.append(ways[-1] + ways[-2] + ways[-3])\n"
        f"ways[{stairs}]",
        f"x, y = 0, 1\nfor _ in range({k}):\n    x, y = y, (x + y) % {m}\nx",
        "import csv\nrows = list(csv.DictReader(open('sales.csv')))\n"
        f"round(sum(int(r['units']) * float(r['unit_price']) for r in rows if r['region'] == {region!r} and "
        f"r['product'] == {product!r} and int(r['date'][5:7]) == {month}), 2)",
    ]
    return [(render_prompt(text, **slots), c) for (text, slots), c in zip(questions, code, strict=True)]


def run_reference(code: str, cwd: Path):
    """The value of the code's last expression, run like the tool runs it (in the working folder)."""
    import ast

    tree = ast.parse(code)
    last = tree.body.pop()
    g: dict = {}
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(tree, "<ref>", "exec"), g)
            return eval(compile(ast.Expression(last.value), "<ref>", "eval"), g)
    finally:
        os.chdir(old)


def build(store: str | Path, seed: int = 0) -> Path:
    """Write `<store>/code_interpreter/` deterministically from `seed`."""
    out = Path(store) / ENV_ID
    make_state(out / "state", random.Random(seed))
    tasks = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in os.listdir(out / "state"):
            Path(scratch, name).write_bytes((out / "state" / name).read_bytes())
        for i, (question, code) in enumerate(task_specs(random.Random(seed * 7919 + 1))):
            value = run_reference(code, Path(scratch))
            tasks.append(
                Candidate(
                    template=f"code_interpreter/{i}",
                    difficulty=2 + (i == 4),
                    prompt=[question],
                    verifier="check_number",
                    params={"expected": float(value)},
                    solution=[ToolCall(name="python", arguments={"code": code})],
                    answer=f"The answer is \\boxed{{{value}}}.",
                )
            )
    return write_env(
        out, seed, tasks, category="code_interpreter", domain="code_interpreter", description=DESCRIPTION,
        source_dir=HERE, limits=EnvLimits(call_timeout_s=130.0, max_result_chars=30000, max_steps=30),
        rendered=("tools.py", "verify.py"),
    )  # fmt: skip


if __name__ == "__main__":
    main(build, __doc__)
