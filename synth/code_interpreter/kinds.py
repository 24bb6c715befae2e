"""The question kinds of the code-interpreter family: per kind its level, whether it reads the data, its maker
and its phrasings (jinja2 prompt templates, rendered by `render_prompt` with the theme's words and the maker's
slots), and the order in which an environment asks them."""

from __future__ import annotations

from itertools import zip_longest

from . import maths, questions

LCG_TEXT = "x_0 = {{ s }}, x_(i+1) = ({{ a }} * x_i + {{ c }}) mod {{ m }}, with the {{ n }} terms x_0 .. x_{{ last }}"
KINDS: dict[str, tuple[int, bool, object, list[str]]] = {
    # kind: (level, uses the data, maker, prompt phrasings)
    "total": (1, True, questions.d_total, [
        "What is the total {{ m1 }} over all {{ rows }} in {{ src }}?",
        "Add up the {{ m1 }} of every {{ row }} in {{ src }}. What do you get?",
    ]),
    "count": (1, True, questions.d_count, [
        'How many {{ rows }} in {{ src }} are recorded for {{ c1 }} "{{ v }}"?',
        'Count the {{ rows }} of {{ c1 }} "{{ v }}" in {{ src }}.',
    ]),
    "mean": (1, True, questions.d_mean, [
        'What is the average {{ m2 }} of the {{ rows }} in {{ src }} with {{ c2 }} "{{ w }}"?',
        'Across the {{ rows }} in {{ src }} whose {{ c2 }} is "{{ w }}", what is the mean {{ m2 }}?',
    ]),
    "max": (1, True, questions.d_max, ['What is the highest {{ m2 }} among the {{ rows }} in {{ src }} with {{ c2 }} "{{ w }}"?']),
    "missing": (1, True, questions.d_missing, ["How many {{ rows }} in {{ src }} have no {{ m1 }} value?"]),
    "group_max": (2, True, questions.d_group_max, [
        "In {{ src }}, what was the highest total {{ m1 }} reached by a single {{ c1 }} in {{ month }} {{ year }}?",
        "Group the {{ rows }} of {{ month }} {{ year }} in {{ src }} by {{ c1 }}. What is the largest total {{ m1 }} of any group?",
    ]),
    "filter_mean": (2, True, questions.d_filter_mean, [
        'From {{ src }}: what is the average {{ m2 }} of the {{ c2 }} "{{ w }}" {{ rows }} whose {{ m1 }} is above {{ t }}?',
    ]),
    "distinct_days": (2, True, questions.d_distinct_days, [
        'According to {{ src }}, on how many different days in {{ year }} did {{ c1 }} "{{ v }}" have at least one {{ row }}?',
    ]),
    "month_count": (2, True, questions.d_month_count, [
        'How many {{ rows }} with {{ c2 }} "{{ w }}" does {{ src }} list for {{ month }} {{ year }}?',
    ]),
    "join_attr": (3, True, questions.d_join_attr, [
        '{{ lookup_file }} gives each {{ c1 }} a {{ attr }}. What is the total {{ m1 }} in {{ src }} of all {{ rows }} at {{ c1 }}s whose '
        '{{ attr }} is "{{ z }}"?',
    ]),
    "join_target": (3, True, questions.d_join_target, [
        "For how many {{ c1 }}s did the total {{ m1 }} in {{ year }}, per {{ src }}, exceed the {{ num_label }} given in "
        "{{ lookup_file }}?",
    ]),
    "multi": (3, True, questions.d_multi, [
        'How many {{ rows }} in {{ src }} between {{ d1 }} and {{ d2 }} (both days included) had {{ c2 }} "{{ w }}" and a {{ m2 }} of at '
        "least {{ t }}?",
    ]),
    "join_mean": (3, True, questions.d_join_mean, [
        'Using {{ src }} and {{ lookup_file }}, what is the average {{ m2 }} of the {{ rows }} at {{ c1 }}s whose {{ attr }} is "{{ z }}"?',
    ]),
    "monthly_median": (4, True, questions.d_monthly_median, [
        'From {{ src }}, total the {{ m1 }} of {{ c1 }} "{{ v }}" for each of the 12 months of {{ year }} (a month without {{ rows }} '
        "counts as 0). What is the median of these monthly totals?",
    ]),
    "mom_increase": (4, True, questions.d_mom_increase, [
        "From {{ src }}, total the {{ m1 }} of each month of {{ year }}. What is the largest increase from one month to the "
        "next?",
    ]),
    "weekday": (4, True, questions.d_weekday, [
        "In {{ src }}, what was the total {{ m1 }} of all {{ rows }} that fell on a {{ weekday }} in {{ year }}?",
    ]),
    "share": (4, True, questions.d_share, [
        'In {{ src }}, what percentage of the total {{ m1 }} of {{ c1 }} "{{ v }}" came from {{ rows }} with {{ c2 }} "{{ w }}"? Answer in '
        "percent (12.5 for 12.5%).",
    ]),
    "streak": (5, True, questions.d_streak, [
        'In {{ src }}, what is the longest run of consecutive calendar days in {{ year }} on each of which {{ c1 }} "{{ v }}" had '
        "at least one {{ row }}?",
    ]),
    "window": (5, True, questions.d_window, [
        "In {{ src }}, what is the largest total {{ m1 }} over any {{ k }} consecutive calendar days of {{ year }}? Days without "
        "{{ rows }} count as 0.",
    ]),
    "digit_sum": (1, False, maths.m_digit_sum, [
        "What is the sum of the decimal digits of {{ a }}^{{ b }}?",
        "Add up all the decimal digits of {{ a }} raised to the power {{ b }}.",
    ]),
    "multiples": (1, False, maths.m_multiples, [
        "What is the sum of all positive integers below {{ n }} that are divisible by {{ a }} or by {{ b }}?",
    ]),
    "lcm": (1, False, maths.m_lcm, ["What is the least common multiple of {{ nums }}?"]),
    "primes": (2, False, maths.m_primes, [
        "How many prime numbers are there below {{ n }}?",
        "Count the primes smaller than {{ n }}.",
    ]),
    "stairs": (2, False, maths.m_stairs, [
        "In how many ways can you climb a staircase of {{ n }} steps if every move climbs {{ steps }} steps? Give the "
        "count modulo {{ m }}.",
    ]),
    "fib_mod": (2, False, maths.m_fib_mod, ["What is the {{ k }}-th Fibonacci number (F(1) = F(2) = 1) modulo {{ m }}?"]),
    "gcd_sum": (2, False, maths.m_gcd_sum, ["What is the sum of gcd(i, {{ n }}) over all integers i from 1 to {{ n }}?"]),
    "binom": (2, False, maths.m_binom, ["What is the binomial coefficient C({{ n }}, {{ k }}) modulo {{ p }}?"]),
    "coins": (3, False, maths.m_coins, [
        "In how many ways can an amount of {{ amount }} be paid with coins of values {{ coins }} (any number of each, "
        "order does not matter)?",
    ]),
    "collatz": (3, False, maths.m_collatz, [
        "Which starting number below {{ n }} gives the longest Collatz sequence (n -> n/2 if n is even, else 3n+1, "
        "until 1)? If several tie, give the smallest.",
    ]),
    "digit_primes": (3, False, maths.m_digit_primes, [
        "How many primes below {{ n }} have a digit sum that is also prime?",
    ]),
    "savings": (3, False, maths.m_savings, [
        "You pay {{ dep }} into an empty account at the start of every month; at the end of each month it earns "
        "{{ rate }}% interest on the balance, rounded down to the cent. After how many months does the balance "
        "first reach at least {{ target }}?",
    ]),
    "inversions": (4, False, maths.m_inversions, [
        "Generate the sequence " + LCG_TEXT + ". How many pairs i < j have x_i > x_j?",
    ]),
    "residues": (4, False, maths.m_residues, [
        "Generate the sequence " + LCG_TEXT + ". Among the remainders x_i mod {{ k }}, how many values occur exactly "
        "once?",
    ]),
    "fib_huge": (5, False, maths.m_fib_huge, ["What is the {{ k }}-th Fibonacci number (F(1) = F(2) = 1) modulo {{ m }}?"]),
    "partitions": (5, False, maths.m_partitions, [
        "In how many ways can {{ n }} be written as a sum of {{ parts }}, order not mattering? Give the count modulo "
        "{{ m }}.",
    ]),
    "josephus": (5, False, maths.m_josephus, [
        "{{ n }} people stand in a circle, numbered 1 to {{ n }}. Counting from person 1, every {{ k }}-th person leaves the "
        "circle (the count goes on around the circle) until one remains. What is that person's number?",
    ]),
    "lis": (5, False, maths.m_lis, [
        "Take the sequence " + LCG_TEXT + ". How long is its longest strictly increasing subsequence?",
    ]),
    "grid": (5, False, maths.m_grid, [
        "On a grid of {{ height }} rows and {{ width }} columns you walk from the top-left cell to the bottom-right one, moving only right or "
        "down. Cell (r, c), counted from 0, is blocked when (r*{{ a }} + c*{{ b }}) is divisible by {{ p }}, except the start "
        "and the end. How many paths are there?",
    ]),
    "digit_dp": (5, False, maths.m_digit_dp, [
        "How many integers from 1 to {{ n }} have a digit sum divisible by {{ k }}?",
    ]),
}  # fmt: skip


def kind_order() -> list[str]:
    """The kinds interleaved by level, data and maths kinds alternating within a level, so any window of
    candidates climbs the whole ladder."""
    queues = []
    for level in sorted({lv for lv, *_ in KINDS.values()}):
        on_data = [k for k, (lv, uses, *_) in KINDS.items() if lv == level and uses]
        no_data = [k for k, (lv, uses, *_) in KINDS.items() if lv == level and not uses]
        queues.append([k for pair in zip_longest(on_data, no_data) for k in pair if k])
    return [k for row in zip_longest(*queues) for k in row if k]
