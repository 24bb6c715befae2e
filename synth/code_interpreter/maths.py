"""The maths questions of the code-interpreter family (no data): counting, number theory and dynamic programming
with parameters drawn from the question's rng; each returns (prompt slots, reference cells)."""

from __future__ import annotations

from ..family import render_prompt
from .questions import Q

MODULI = [10007, 1_000_003, 998_244_353, 1_000_000_007]


def m_digit_sum(q: Q):
    a, b = q.rng.randint(3, 9), q.rng.randint(150, 600)
    return {"a": a, "b": b}, [f"sum(int(d) for d in str({a} ** {b}))"]


def m_multiples(q: Q):
    a, b = q.rng.sample(range(3, 14), 2)
    n = q.rng.randint(5000, 90000)
    return {"a": a, "b": b, "n": n}, [f"sum(i for i in range(1, {n}) if i % {a} == 0 or i % {b} == 0)"]


def m_lcm(q: Q):
    nums = q.rng.sample(range(12, 240), 4)
    return {"nums": ", ".join(map(str, nums[:3])) + f" and {nums[3]}"}, [f"import math\nmath.lcm(*{nums!r})"]


def m_primes(q: Q):
    n = q.rng.randint(20000, 150000)
    code = (
        f"N = {n}\nsieve = bytearray([1]) * N\nsieve[0:2] = b'\\x00\\x00'\n"
        "for i in range(2, int(N ** 0.5) + 1):\n    if sieve[i]:\n"
        "        sieve[i*i::i] = bytearray(len(sieve[i*i::i]))\nsum(sieve)"
    )
    return {"n": n}, [code]


def m_stairs(q: Q):
    steps = sorted(q.rng.sample(range(1, 8), 3))
    n, m = q.rng.randint(30, 400), q.rng.choice(MODULI)
    code = (
        f"ways = [1] + [0] * {n}\nfor i in range(1, {n} + 1):\n"
        f"    ways[i] = sum(ways[i - s] for s in {steps!r} if s <= i) % {m}\nways[{n}]"
    )
    return {"n": n, "m": m, "steps": f"{steps[0]}, {steps[1]} or {steps[2]}"}, [code]


def m_fib_mod(q: Q):
    k, m = q.rng.randint(500, 5000), q.rng.choice([10007, 1_000_003, 998_244_353])
    return {"k": k, "m": m}, [f"x, y = 0, 1\nfor _ in range({k}):\n    x, y = y, (x + y) % {m}\nx"]


def m_gcd_sum(q: Q):
    n = q.rng.randint(5000, 60000)
    return {"n": n}, [f"import math\nsum(math.gcd(i, {n}) for i in range(1, {n} + 1))"]


def m_binom(q: Q):
    n = q.rng.randint(200, 3000)
    k, p = q.rng.randint(n // 5, n // 2), q.rng.choice([1_000_000_007, 998_244_353])
    return {"n": n, "k": k, "p": p}, [f"import math\nmath.comb({n}, {k}) % {p}"]


def m_coins(q: Q):
    coins = sorted(q.rng.sample([1, 2, 3, 5, 7, 10, 20, 25, 50], 5))
    amount = q.rng.randint(80, 300)
    code = (
        f"ways = [1] + [0] * {amount}\nfor c in {coins!r}:\n"
        f"    for a in range(c, {amount} + 1):\n        ways[a] += ways[a - c]\nways[{amount}]"
    )
    return {"amount": amount, "coins": ", ".join(map(str, coins))}, [code]


def m_collatz(q: Q):
    n = q.rng.randint(2000, 8000)
    code = (
        "lengths = {1: 1}\n\n\ndef length(n):\n    path = []\n    while n not in lengths:\n"
        "        path.append(n)\n        n = n // 2 if n % 2 == 0 else 3 * n + 1\n"
        "    total = lengths[n]\n    for m in reversed(path):\n        total += 1\n        lengths[m] = total\n"
        f"    return lengths[path[0]] if path else total\n\n\nmax(range(1, {n}), key=lambda s: (length(s), -s))"
    )
    return {"n": n}, [code]


def m_digit_primes(q: Q):
    n = q.rng.randint(10000, 80000)
    code = (
        f"N = {n}\nsieve = bytearray([1]) * N\nsieve[0:2] = b'\\x00\\x00'\n"
        "for i in range(2, int(N ** 0.5) + 1):\n    if sieve[i]:\n"
        "        sieve[i*i::i] = bytearray(len(sieve[i*i::i]))\n"
        "sum(1 for p in range(N) if sieve[p] and sieve[sum(map(int, str(p)))])"
    )
    return {"n": n}, [code]


def m_savings(q: Q):
    dep, bp = q.rng.choice([50, 75, 100, 150, 200, 250]), q.rng.choice([15, 25, 30, 40, 50, 60])
    target = dep * q.rng.randint(30, 120)
    code = (
        f"balance, months = 0, 0\nwhile balance < {target} * 100:  # in cents\n"
        f"    balance += {dep} * 100\n    balance += balance * {bp} // 10000\n    months += 1\nmonths"
    )
    return {"dep": dep, "rate": f"{bp / 100:g}", "target": target}, [code]


def _lcg(q: Q) -> tuple[dict, str]:
    s, a, c = (
        q.rng.randint(1, 999),
        q.rng.choice([1103515245, 69069, 22695477]),
        q.rng.choice([12345, 1, 1013904223]),
    )
    m, n = q.rng.choice([2**31, 2**32, 10**9 + 7]), q.rng.randint(1000, 3000)
    code = f"xs = [{s}]\nwhile len(xs) < {n}:\n    xs.append(({a} * xs[-1] + {c}) % {m})\nlen(xs)"
    return {"s": s, "a": a, "c": c, "m": m, "n": n, "last": n - 1}, code


def m_inversions(q: Q):
    slots, gen = _lcg(q)
    code = (
        "import bisect\nseen, inversions = [], 0\nfor v in xs:\n"
        "    inversions += len(seen) - bisect.bisect_right(seen, v)\n    bisect.insort(seen, v)\ninversions"
    )
    return slots, [gen, code]


def m_residues(q: Q):
    slots, gen = _lcg(q)
    k = q.rng.randint(slots["n"] // 3, slots["n"])  # about one to three terms per remainder
    return {**slots, "k": k}, [
        gen,
        f"from collections import Counter\ncounts = Counter(x % {k} for x in xs)\nsum(1 for c in counts.values() if c == 1)",
    ]


def m_fib_huge(q: Q):
    k, m = q.rng.randint(10**12, 10**15), q.rng.choice([1_000_000_007, 998_244_353])
    code = (
        'def fib(n):\n    """(F(n), F(n+1)) mod M by fast doubling."""\n    if n == 0:\n        return 0, 1\n'
        "    a, b = fib(n // 2)\n    c = a * (2 * b - a) % M\n    d = (a * a + b * b) % M\n"
        f"    return (d, (c + d) % M) if n % 2 else (c, d)\n\n\nM = {m}\nfib({k})[0]"
    )
    return {"k": k, "m": m}, [code]


PARTS = {
    # kind of parts: (prompt words (jinja2), the part sizes as a range (code, str.format), each size used once)
    "distinct": ("distinct positive integers", "range(1, {n} + 1)", True),
    "odd": ("odd positive integers (repeats allowed)", "range(1, {n} + 1, 2)", False),
    "distinct_odd": ("distinct odd positive integers", "range(1, {n} + 1, 2)", True),
    "at_least": ("integers of at least {{ lo }} (repeats allowed)", "range({lo}, {n} + 1)", False),
}


def m_partitions(q: Q):
    n, m, lo, kind = (
        q.rng.randint(60, 400),
        q.rng.choice(MODULI),
        q.rng.randint(2, 6),
        q.rng.choice(list(PARTS)),
    )
    words, sizes, once = PARTS[kind]
    # a size used at most once walks the totals downwards (0/1 knapsack), a reusable one upwards
    totals = f"range({n}, part - 1, -1)" if once else f"range(part, {n} + 1)"
    code = (
        f"ways = [1] + [0] * {n}\nfor part in {sizes.format(n=n, lo=lo)}:\n"
        f"    for total in {totals}:\n        ways[total] = (ways[total] + ways[total - part]) % {m}\nways[{n}]"
    )
    return {"n": n, "m": m, "parts": render_prompt(words, lo=lo)}, [code]


def m_josephus(q: Q):
    n, k = q.rng.randint(1000, 50000), q.rng.randint(2, 9)
    return {"n": n, "k": k}, [
        f"survivor = 0\nfor size in range(2, {n} + 1):\n    survivor = (survivor + {k}) % size\nsurvivor + 1"
    ]


def m_lis(q: Q):
    slots, gen = _lcg(q)
    code = gen.rsplit("\n", 1)[0] + (
        "\nimport bisect\ntails = []\nfor v in xs:\n    i = bisect.bisect_left(tails, v)\n"
        "    tails[i:i + 1] = [v]\nlen(tails)"
    )
    return slots, [code]


def m_grid(q: Q):
    rows, cols = q.rng.randint(10, 16), q.rng.randint(10, 16)
    a, b, p = q.rng.randint(2, 9), q.rng.randint(2, 9), q.rng.choice([5, 7, 11, 13])
    code = (
        f"R, C = {rows}, {cols}\npaths = [[0] * C for _ in range(R)]\nfor r in range(R):\n    for c in range(C):\n"
        f"        if (r * {a} + c * {b}) % {p} == 0 and (r, c) not in ((0, 0), (R - 1, C - 1)):\n"
        "            continue  # blocked\n"
        "        paths[r][c] = 1 if r == c == 0 else (paths[r - 1][c] if r else 0) + (paths[r][c - 1] if c else 0)\n"
        "paths[R - 1][C - 1]"
    )
    return {"height": rows, "width": cols, "a": a, "b": b, "p": p}, [code]


def m_digit_dp(q: Q):
    n, k = q.rng.randint(10**6, 10**9), q.rng.randint(3, 23)
    code = (
        f"from functools import lru_cache\n\ndigits = [int(d) for d in str({n})]\n\n\n@lru_cache(maxsize=None)\n"
        "def count(pos, rem, tight):\n    if pos == len(digits):\n        return rem == 0\n"
        "    top = digits[pos] if tight else 9\n"
        f"    return sum(count(pos + 1, (rem + d) % {k}, tight and d == top) for d in range(top + 1))\n\n\n"
        "count(0, 0, True) - 1  # 0 itself has digit sum 0"
    )
    return {"n": n, "k": k}, [code]
