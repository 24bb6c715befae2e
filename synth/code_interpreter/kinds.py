"""The question kinds of the code-interpreter family: the shape of each kind's plan (`questions.draw_plan`) and
its level. The level is the number of dependent steps after loading the data: every join or pick is a cell whose
result the next cell needs, so the reference takes level + 1 calls, rising from two at level 1 to six at level 5."""

from __future__ import annotations

from itertools import zip_longest

ALL = ("sum", "count", "mean", "max", "median", "days")


def _shape(level: int, picks: int, join: str | None, literals: tuple[int, ...], finals=ALL) -> dict:
    return {"level": level, "picks": picks, "join": join, "literals": literals, "finals": finals}


KINDS: dict[str, dict] = {
    # level 1: load, then one filtered aggregate (two calls)
    "filtered": _shape(1, 0, None, (2, 3)),
    # level 2: load, find the leading group, then an aggregate over it (three calls)
    "leader": _shape(2, 1, None, (1, 2)),
    # level 3: two dependent picks, or a lookup join and a pick (four calls)
    "leader_of_leader": _shape(3, 2, None, (1, 2)),
    "joined_leader": _shape(3, 1, "attr", (1, 2)),
    # level 4: a join and two picks, or targets compared with totals and a pick (five calls)
    "joined_chain": _shape(4, 2, "attr", (1, 2)),
    "over_target_leader": _shape(4, 1, "target", (1, 2)),
    # level 5: targets and two picks, or a join, two picks and the last pick's share of the one before (six calls)
    "over_target_chain": _shape(5, 2, "target", (1, 2)),
    "joined_chain_share": _shape(5, 2, "attr", (1, 2), ("share",)),
}


def cells_of(kind: str) -> int:
    """The reference's calls for a kind: load, each join cell (two to compare targets), each pick, the answer
    (two for a share)."""
    s = KINDS[kind]
    share = s["finals"] == ("share",)
    return 2 + s["picks"] + {None: 0, "attr": 1, "target": 2}[s["join"]] + share


def kind_order() -> list[str]:
    """The kinds interleaved by level, so any window of candidates climbs the whole ladder evenly."""
    by_level = [[k for k, s in KINDS.items() if s["level"] == lv] for lv in range(1, 6)]
    rounds = max(len(x) for x in by_level)
    queues = [[q[i % len(q)] for i in range(rounds)] for q in by_level]
    return [k for row in zip_longest(*queues) for k in row if k]
