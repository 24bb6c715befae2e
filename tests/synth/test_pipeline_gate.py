"""The shortcut gate in admission and the pipeline: what a shortcut solves is dropped (and counted, and offered
to the family's `harden`), the rest is kept with its measured features."""

from __future__ import annotations

import pytest
from toolgym.envs.runtime import EnvServerOps, LocalEnvServer
from toolgym.synth.admission import admit
from toolgym.synth.family import Family
from toolgym.synth.pipeline import admit_env
from toolgym.synth.shortcuts import NAMES

from tests.synth.test_shortcuts import CHAIN_MORE, EASY, HARD, tools_of, write_shop


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    env = write_shop(tmp_path_factory.mktemp("shop"))
    ops = LocalEnvServer(env)
    yield env, ops
    ops.close()


def submit_of(env) -> str:
    return next(t["function"]["name"] for t in tools_of(env) if t.get("submit"))


def test_gate_drops_what_a_shortcut_solves_and_keeps_the_rest(shop):
    env, ops = shop
    cands = [*EASY.items(), *HARD.items()]
    out = admit(ops, cands, submit_of(env), tools_of(env))
    assert [tid for tid, _ in out.kept] == list(HARD)
    assert sum(v for k, v in out.drops.items() if k.startswith("shortcut_")) == len(EASY)
    # counted under the first shortcut (in NAMES order) that solved it
    assert out.drops["shortcut_prompt_only"] == 2 and out.drops["shortcut_one_call"] == 2
    assert out.solved_by["write_all"] == ["one_call", "write_all"]
    assert all(out.solved_by[tid] == [] for tid in HARD)
    assert {tid for tid, _, reason in out.too_easy if reason.startswith("shortcut_")} == set(EASY)


class CountingOps(EnvServerOps):
    """The env server's operations, recording the episodes of every replay request."""

    def __init__(self, inner: EnvServerOps) -> None:
        self.inner = inner
        self.replays: list[list[dict]] = []

    def request(self, op: str, timeout_s: float | None = None, **fields) -> dict:
        if op == "replay":
            self.replays.append(fields["episodes"])
        return self.inner.request(op, timeout_s=timeout_s, **fields)


def test_second_round_costs_one_request_of_distinct_reads(shop):
    env, ops = shop
    counting = CountingOps(ops)
    # three tasks of one customer: their second-round reads are the same calls, made once
    cands = [("chain", EASY["chain"]), ("kept", HARD["payments_kept"]), *CHAIN_MORE.items()]
    out = admit(counting, cands, submit_of(env), tools_of(env))
    assert out.solved_by == {
        "chain": ["chain"],
        "kept": [],
        "chain_write": ["chain"],
        "chain_filtered": ["chain"],
    }
    checks, follows, finals = counting.replays  # no state verifier here: no request for expected states
    assert all(e["observe"] and len(e["calls"]) == 1 for e in follows)
    keys = [repr(e["calls"][0]) for e in follows]
    assert len(keys) == len(set(keys)) and not set(keys) & {
        repr(e["calls"][0]) for e in checks if e["observe"]
    }
    listed = [e["calls"][0]["arguments"] for e in follows if e["calls"][0]["name"] == "list_payments"]
    assert listed == [{"customer_id": "A001"}, {"customer_id": "A002"}]
    assert not any(e["observe"] for e in finals)


def test_gate_off_keeps_them(shop):
    env, ops = shop
    counting = CountingOps(ops)
    out = admit(counting, list(EASY.items()), submit_of(env), tools_of(env), gate=False)
    assert [tid for tid, _ in out.kept] == list(EASY) and out.solved_by == {}
    assert len(counting.replays) == 1 and not any(e["observe"] for e in counting.replays[0])


class ShopFamily(Family):
    """A family whose harden turns the too-easy cancel task into one that needs reasoning."""

    NAME = "shopfam"
    CATEGORY = "general"
    VERSION = "1"

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def harden(self, env_dir, key, seed, candidate, reason):
        self.asked.append((candidate.prompt[0], reason))
        return HARD["cancel_other"] if candidate is EASY["write_all"] else None


def test_admit_env_hardens_once_and_records_features(shop):
    env, ops = shop
    fam = ShopFamily()
    cands = [("t-0", EASY["write_all"]), ("t-1", EASY["list_pick"]), ("t-2", HARD["buy_cheapest_book"])]
    got = admit_env(fam, env, ("shop", 0), 0, ops, cands)
    assert [reason for _, reason in fam.asked] == ["shortcut_one_call", "shortcut_list_pick"]
    kept = {tid: (c, f) for tid, c, f in got["kept"]}
    assert set(kept) == {"t-0", "t-2"}
    hardened, feats = kept["t-0"]
    assert hardened is HARD["cancel_other"] and feats["hardening"] == ["shortcut_one_call"]
    assert got["hardening"] == {"too_easy": 2, "returned": 1, "kept": 1, "drops": {}}
    f = kept["t-2"][1]
    assert (f["reference_calls"], f["writes"], f["reads"], f["distinct_tools"]) == (3, 1, 2, 3)
    assert f["shortcuts_tried"] == list(NAMES) and f["hardening"] == []
    # solve rates before the gate: the family's own level, every candidate that reached the gate
    row = got["gate"]["shopfam/1"]
    assert row["candidates"] == 3 and row["any"] == 2 and row["list_pick"] == 1 and row["write_all"] == 1


def test_family_harden_defaults_to_none(shop):
    env, _ = shop
    assert Family().harden(env, ("shop", 0), 0, EASY["write_all"], "shortcut_one_call") is None
