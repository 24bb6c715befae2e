"""The code family's function library: small pure-Python utilities, each correct as written here.

`synth/code.py` copies single functions out of this file (by their `def` lines) into generated repositories,
injects bugs into some of them by mutating their source, and computes every test's expected value by running
the functions below. Each function is self-contained except for calls to other functions of this file; the
family finds those calls (its dependencies) and the stdlib modules it uses (re, math) by parsing the source.
"""

# ruff: noqa: B905 - functions are copied into generated repositories; zip(strict=...) would be noise there

import math
import re

# -- text ------------------------------------------------------------------------------------------------


def slugify(text):
    """Lower-case words and digits joined by hyphens: "Hello, World 2" -> "hello-world-2"."""
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))


def truncate(text, width, suffix="..."):
    """Shorten `text` to at most `width` characters, ending with `suffix` when it was cut."""
    if len(text) <= width:
        return text
    cut = width - len(suffix)
    if cut <= 0:
        return suffix[:width]
    return text[:cut] + suffix


def wrap_words(text, width):
    """Greedy word wrap into lines of at most `width` characters (a longer word gets a line of its own)."""
    lines, current = [], ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        elif current:
            current += " " + word
        else:
            current = word
    if current:
        lines.append(current)
    return lines


def title_case(text, minor=("a", "an", "the", "of", "and", "in")):
    """Capitalize every word except minor ones; the first word is always capitalized."""
    out = []
    for i, word in enumerate(text.split()):
        if i > 0 and word.lower() in minor:
            out.append(word.lower())
        else:
            out.append(word.capitalize())
    return " ".join(out)


def caesar(text, shift):
    """Shift letters `shift` places along the alphabet, keeping their case; other characters stay."""
    out = []
    for ch in text:
        if "A" <= ch <= "Z":
            out.append(chr((ord(ch) - 65 + shift) % 26 + 65))
        elif "a" <= ch <= "z":
            out.append(chr((ord(ch) - 97 + shift) % 26 + 97))
        else:
            out.append(ch)
    return "".join(out)


def run_length(text):
    """Run-length encoding: "aaabcc" -> "3a1b2c"."""
    if not text:
        return ""
    out = []
    count = 1
    for prev, ch in zip(text, text[1:]):
        if ch == prev:
            count += 1
        else:
            out.append(f"{count}{prev}")
            count = 1
    out.append(f"{count}{text[-1]}")
    return "".join(out)


def initials(name):
    """Initials of a name, upper-case with dots: "ada king lovelace" -> "A.K.L."."""
    return "".join(part[0].upper() + "." for part in name.split())


def word_freq(text, top=3):
    """The `top` most frequent lower-case words as (word, count) pairs; ties keep first appearance."""
    counts = {}
    for word in text.lower().split():
        counts[word] = counts.get(word, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    return ranked[:top]


def headline(text, width=24):
    """A title-cased headline of at most `width` characters."""
    return truncate(title_case(text), width)


def slug_list(titles):
    """Slugs of the titles, without repeats, in first-seen order."""
    return dedupe([slugify(t) for t in titles])


def wrap_title(text, width):
    """A title-cased text wrapped into lines of at most `width` characters."""
    return wrap_words(title_case(text), width)


# -- lists -----------------------------------------------------------------------------------------------


def chunk(items, size):
    """Split a list into lists of `size` items (the last may be shorter)."""
    if size < 1:
        raise ValueError("size must be at least 1")
    return [items[i : i + size] for i in range(0, len(items), size)]


def dedupe(items):
    """The items without repeats, in first-seen order."""
    seen = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def rotate(items, k):
    """Rotate a list left by `k` places (a negative `k` rotates right)."""
    if not items:
        return []
    k %= len(items)
    return items[k:] + items[:k]


def pairwise_diffs(values):
    """Differences between consecutive values: [1, 4, 9] -> [3, 5]."""
    return [b - a for a, b in zip(values, values[1:])]


def top_k(values, k):
    """The `k` largest values, largest first."""
    return sorted(values, reverse=True)[:k]


def running_total(values):
    """Cumulative sums: [1, 2, 3] -> [1, 3, 6]."""
    total = 0
    out = []
    for v in values:
        total += v
        out.append(total)
    return out


def interleave(a, b):
    """Alternate the items of two lists; the rest of the longer one comes at the end."""
    out = []
    for i in range(max(len(a), len(b))):
        if i < len(a):
            out.append(a[i])
        if i < len(b):
            out.append(b[i])
    return out


def moving_average(values, window):
    """Averages of each run of `window` consecutive values, rounded to 4 places."""
    return [round(sum(values[i : i + window]) / window, 4) for i in range(len(values) - window + 1)]


def smooth_trend(values, window=3):
    """Changes between consecutive moving averages, rounded to 4 places."""
    return [round(d, 4) for d in pairwise_diffs(moving_average(values, window))]


def chunk_means(values, size):
    """The mean of each chunk of `size` values."""
    return [mean(part) for part in chunk(values, size)]


def top_total(values, k):
    """Sum of the `k` largest values."""
    return sum(top_k(values, k))


def rotated_chunks(items, k, size):
    """The list rotated left by `k`, then cut into chunks of `size`."""
    return chunk(rotate(items, k), size)


# -- maths -----------------------------------------------------------------------------------------------


def clamp(x, lo, hi):
    """`x` limited to the range lo..hi."""
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


def gcd(a, b):
    """Greatest common divisor (Euclid)."""
    while b:
        a, b = b, a % b
    return abs(a)


def lcm(a, b):
    """Least common multiple; 0 when either is 0."""
    if a == 0 or b == 0:
        return 0
    return abs(a * b) // gcd(a, b)


def is_prime(n):
    """Whether `n` is a prime number."""
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


def count_primes(limit):
    """How many primes are at most `limit`."""
    return sum(1 for n in range(limit + 1) if is_prime(n))


def digit_sum(n):
    """Sum of the decimal digits of `n` (its sign ignored)."""
    n = abs(n)
    total = 0
    while n > 0:
        total += n % 10
        n //= 10
    return total


def percent_change(old, new):
    """Change from `old` to `new` in percent of `old`, rounded to 2 places."""
    if old == 0:
        raise ValueError("old must not be 0")
    return round((new - old) / abs(old) * 100, 2)


def hypotenuse(a, b):
    """Length of the hypotenuse of a right triangle, rounded to 4 places."""
    return round(math.sqrt(a * a + b * b), 4)


def reduce_fraction(num, den):
    """The fraction num/den in lowest terms, as a (numerator, denominator) pair with den > 0."""
    g = gcd(num, den)
    if den < 0:
        g = -g
    return (num // g, den // g)


# -- stats -----------------------------------------------------------------------------------------------


def mean(values):
    """Arithmetic mean, rounded to 4 places."""
    return round(sum(values) / len(values), 4)


def median(values):
    """The median of a non-empty list of numbers."""
    s = sorted(values)
    mid = len(s) // 2
    if len(s) % 2:
        return s[mid]
    return (s[mid - 1] + s[mid]) / 2


def variance(values):
    """Population variance, rounded to 4 places."""
    m = sum(values) / len(values)
    return round(sum((v - m) ** 2 for v in values) / len(values), 4)


def mode(values):
    """The most frequent value; the smallest one on a tie."""
    counts = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    best = max(counts.values())
    return min(v for v, c in counts.items() if c == best)


def value_range(values):
    """Largest minus smallest value."""
    return max(values) - min(values)


def summary(values):
    """(smallest, median, largest) of the values."""
    return (min(values), median(values), max(values))


def spread_ratio(values):
    """Range of the values divided by their mean, rounded to 4 places."""
    return round(value_range(values) / mean(values), 4)


def center_gap(values):
    """Mean minus median, rounded to 4 places: how skewed the values are."""
    return round(mean(values) - median(values), 4)


# -- dates: (year, month, day) tuples --------------------------------------------------------------------


def is_leap(year):
    """Whether `year` is a leap year of the Gregorian calendar."""
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def days_in_month(year, month):
    """Number of days of a month (1-12) of a year."""
    if month == 2:
        return 29 if is_leap(year) else 28
    if month in (4, 6, 9, 11):
        return 30
    return 31


def day_of_year(date):
    """1 for January 1st, up to 365 or 366."""
    year, month, day = date
    return sum(days_in_month(year, m) for m in range(1, month)) + day


def add_days(date, n):
    """The date `n` days (n >= 0) after `date`."""
    year, month, day = date
    day += n
    while day > days_in_month(year, month):
        day -= days_in_month(year, month)
        month += 1
        if month > 12:
            month = 1
            year += 1
    return (year, month, day)


def weekday(date):
    """Day of the week, 0 for Sunday to 6 for Saturday."""
    offsets = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4]
    year, month, day = date
    if month < 3:
        year -= 1
    return (year + year // 4 - year // 100 + year // 400 + offsets[month - 1] + day) % 7


def days_between(a, b):
    """Days from date `a` to the later date `b`."""
    if a[0] == b[0]:
        return day_of_year(b) - day_of_year(a)
    total = (366 if is_leap(a[0]) else 365) - day_of_year(a)
    for year in range(a[0] + 1, b[0]):
        total += 366 if is_leap(year) else 365
    return total + day_of_year(b)


def format_date(date):
    """ISO format: (2024, 3, 9) -> "2024-03-09"."""
    year, month, day = date
    return f"{year:04d}-{month:02d}-{day:02d}"


def next_weekday(date, target):
    """The first date on or after `date` that falls on weekday `target` (0 Sunday .. 6 Saturday)."""
    return add_days(date, (target - weekday(date)) % 7)


# -- parsing ---------------------------------------------------------------------------------------------


def parse_kv(text, sep=";"):
    """Parse "a=1; b=two" into {"a": "1", "b": "two"}; blank entries are skipped."""
    out = {}
    for part in text.split(sep):
        if not part.strip():
            continue
        key, _, value = part.partition("=")
        out[key.strip()] = value.strip()
    return out


def parse_duration(text):
    """Seconds in a duration such as "1h30m", "45s" or "2h5s"."""
    units = {"h": 3600, "m": 60, "s": 1}
    total = 0
    number = ""
    for ch in text:
        if ch.isdigit():
            number += ch
        elif ch in units and number:
            total += int(number) * units[ch]
            number = ""
        else:
            raise ValueError(f"bad duration {text!r}")
    return total


def format_duration(seconds):
    """Seconds as a duration: 3725 -> "1h2m5s"; zero parts are left out ("0s" for 0)."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if v > 0]
    return "".join(parts) or "0s"


def parse_version(text):
    """A dotted version as a tuple of integers: "1.10.2" -> (1, 10, 2)."""
    return tuple(int(p) for p in text.split("."))


def compare_versions(a, b):
    """-1, 0 or 1 as version `a` is older than, equal to or newer than `b` (missing parts count as 0)."""
    va, vb = parse_version(a), parse_version(b)
    n = max(len(va), len(vb))
    va = va + (0,) * (n - len(va))
    vb = vb + (0,) * (n - len(vb))
    return (va > vb) - (va < vb)


def parse_ranges(text):
    """Expand "1-3,7" into [1, 2, 3, 7]."""
    out = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            out.extend(range(int(lo), int(hi) + 1))
        else:
            out.append(int(part))
    return out


def normalize_duration(text):
    """A duration rewritten in its shortest form: "90m" -> "1h30m"."""
    return format_duration(parse_duration(text))


# -- intervals: (start, end) pairs, the end excluded -----------------------------------------------------


def overlaps(a, b):
    """Whether two intervals share at least one point."""
    return a[0] < b[1] and b[0] < a[1]


def merge_intervals(intervals):
    """Sorted, with overlapping or touching intervals merged."""
    merged = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def covered_length(intervals):
    """Total length covered by the intervals, overlaps counted once."""
    return sum(end - start for start, end in merge_intervals(intervals))


def free_slots(busy, day_start, day_end):
    """The gaps between busy intervals within day_start..day_end."""
    slots = []
    cursor = day_start
    for start, end in merge_intervals(busy):
        if start > cursor:
            slots.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < day_end:
        slots.append((cursor, day_end))
    return slots


def clip_interval(interval, lo, hi):
    """The part of `interval` inside lo..hi, or None when they do not overlap."""
    start, end = max(interval[0], lo), min(interval[1], hi)
    if start >= end:
        return None
    return (start, end)


def any_overlap(intervals):
    """Whether any two of the intervals overlap."""
    for i, a in enumerate(intervals):
        for b in intervals[i + 1 :]:
            if overlaps(a, b):
                return True
    return False


# -- matrices: lists of rows -----------------------------------------------------------------------------


def identity(n):
    """The n x n identity matrix."""
    return [[1 if i == j else 0 for j in range(n)] for i in range(n)]


def transpose(m):
    """Rows become columns."""
    return [list(row) for row in zip(*m)]


def mat_mul(a, b):
    """Matrix product of `a` (n x k) and `b` (k x m)."""
    return [[sum(a[i][t] * b[t][j] for t in range(len(b))) for j in range(len(b[0]))] for i in range(len(a))]


def mat_power(m, k):
    """The square matrix `m` multiplied by itself `k` times (k >= 0)."""
    result = identity(len(m))
    for _ in range(k):
        result = mat_mul(result, m)
    return result


def trace(m):
    """Sum of the main diagonal of a square matrix."""
    return sum(m[i][i] for i in range(len(m)))


def row_maxima(m):
    """The largest value of each row."""
    return [max(row) for row in m]


def gram(m):
    """The matrix transpose(m) times m."""
    return mat_mul(transpose(m), m)


def trace_of_power(m, k):
    """Trace of the square matrix `m` to the power `k`."""
    return trace(mat_power(m, k))


# -- money: amounts in cents -----------------------------------------------------------------------------


def apply_discount(cents, percent):
    """Price in cents after a percent discount, rounded half up to a cent."""
    return (cents * (100 - percent) + 50) // 100


def split_bill(total, people):
    """Split `total` cents among `people`: equal shares, the first ones pay the leftover cents."""
    base, extra = divmod(total, people)
    return [base + 1 if i < extra else base for i in range(people)]


def format_cents(cents):
    """Cents as money with thousands separators: 1234567 -> "12,345.67"."""
    sign = "-" if cents < 0 else ""
    units, rest = divmod(abs(cents), 100)
    return f"{sign}{units:,}.{rest:02d}"


def order_total(lines, tax_percent=20):
    """Total in cents of (quantity, unit cents) lines plus tax, rounded half up."""
    subtotal = sum(q * p for q, p in lines)
    return subtotal + (subtotal * tax_percent + 50) // 100


def restock(stock, threshold):
    """Names of the items whose quantity is below `threshold`, sorted."""
    return sorted(name for name, qty in stock.items() if qty < threshold)


def invoice(lines, percent, tax_percent=20):
    """The discounted order total with tax, formatted as money."""
    return format_cents(apply_discount(order_total(lines, tax_percent), percent))


def shares_text(total, people):
    """Each person's share of a bill, formatted as money."""
    return [format_cents(s) for s in split_bill(total, people)]


def discounted_shares(total, percent, people):
    """A bill after a percent discount, split among `people`."""
    return split_bill(apply_discount(total, percent), people)
