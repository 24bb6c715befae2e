"""The warm pool: hands out clean, answering sandboxes; recycles by policy; replaces the dead."""

from __future__ import annotations

import asyncio
import time

import pytest
from toolgym.sandbox import BlockingSandboxPool, Limits, SandboxPool

LIMITS = Limits(memory_mb=256, timeout_s=10)


def run(coro):
    return asyncio.run(coro)


def test_reset_recycling_never_hands_out_a_dirty_sandbox(backend):
    async def main():
        async with SandboxPool(1, backend=backend, limits=LIMITS) as pool:
            sb = await pool.acquire()
            await sb.arun("sleep 300 > /dev/null 2>&1 & echo secret > /workspace/notes && echo t > /tmp/t")
            py = await asyncio.to_thread(sb.python)
            await py.arun("leak = 1")
            first_id = sb.id
            await pool.release(sb)
            sb = await pool.acquire()
            assert sb.id == first_id  # recycled in place, by a verified reset
            procs = await asyncio.to_thread(sb.processes)
            others = [p for p in procs if p["state"] != "Z" and p["pid"] != 1]
            assert len(others) <= 1 and all("kernel.py" in p["cmd"] for p in others), others  # the spare
            r = await sb.arun("ls -A /workspace /tmp")
            assert r.stdout.split() == ["/tmp:", "/workspace:"]
            py = await asyncio.to_thread(sb.python)
            assert (await py.arun("leak")).error.type == "NameError"
            await pool.release(sb)
            assert pool.stats.reset == 1 and pool.stats.replaced == 0

    run(main())


@pytest.mark.parametrize(
    "policy,tainted,expect_same", [("fresh", False, False), ("auto", True, False), ("auto", False, True)]
)
def test_recycle_policies(docker_backend, policy, tainted, expect_same):
    async def main():
        async with SandboxPool(1, backend=docker_backend, limits=LIMITS, recycle=policy) as pool:
            sb = await pool.acquire()
            if tainted:
                await sb.arun("true")
            first = sb.id
            await pool.release(sb)
            sb = await pool.acquire()
            assert (sb.id == first) == expect_same
            await pool.release(sb)

    run(main())


def test_dead_sandbox_is_discarded_at_hand_out(docker_backend):
    async def main():
        async with SandboxPool(2, backend=docker_backend, limits=LIMITS) as pool:
            a = await pool.acquire()
            b = await pool.acquire()
            await pool.release(a)
            await pool.release(b)
            await asyncio.sleep(0.3)  # both reset and back in the queue
            # Kill one behind the pool's back: its server stops answering.
            docker_backend.api.remove_container(a.handle.extra["container"], force=True)
            got = [await pool.acquire(), await pool.acquire()]
            assert all(s.id != a.id for s in got)
            assert pool.stats.unhealthy == 1
            for s in got:
                await s.arun("true")
                await pool.release(s)

    run(main())


def test_broken_lease_is_replaced(docker_backend):
    async def main():
        async with SandboxPool(1, backend=docker_backend, limits=LIMITS) as pool:
            with pytest.raises(RuntimeError):
                async with pool.lease() as sb:
                    first = sb.id
                    raise RuntimeError("episode crashed")
            async with pool.lease() as sb:
                assert sb.id != first

    run(main())


def test_concurrent_episodes_share_the_pool(docker_backend):
    async def main():
        async with SandboxPool(3, backend=docker_backend, limits=LIMITS) as pool:
            seen = []

            async def episode(i):
                async with pool.lease() as sb:
                    await sb.arun(f"echo {i} > /workspace/mine")
                    await asyncio.sleep(0.01)
                    r = await sb.arun("cat /workspace/mine")
                    seen.append(r.stdout.strip() == str(i))

            await asyncio.gather(*(episode(i) for i in range(12)))
            assert seen == [True] * 12
            assert pool.stats.created == 3

    run(main())


def test_blocking_pool(backend):
    with BlockingSandboxPool(2, backend=backend, limits=LIMITS) as pool:
        with pool.lease() as sb:
            assert sb.run("echo hi").stdout == "hi\n"
        sb = pool.acquire()
        pool.release(sb)
        deadline = time.monotonic() + 10  # recycling runs in the background
        while pool.stats.reset < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.stats.reset == 2


def test_pool_rejects_bad_arguments(docker_backend):
    with pytest.raises(ValueError, match="recycle"):
        SandboxPool(1, backend=docker_backend, recycle="sometimes")
    with pytest.raises(ValueError, match="at least 1"):
        SandboxPool(0, backend=docker_backend)


def test_a_forked_worker_gets_its_own_engine_connection(docker_backend):
    """A multiprocessing worker forked after the parent used Docker must not write on the parent's pooled
    connection (CI saw garbled creates: 400 Bad Request); it starts with no client or backend of the parent's,
    and its sandboxes work."""
    import multiprocessing

    from toolgym.sandbox import engine, get_backend, open_sandbox
    from toolgym.sandbox import sandbox as sandbox_module

    assert engine._client is not None and sandbox_module._backends
    with multiprocessing.get_context("fork").Pool(2, maxtasksperchild=1) as pool:  # each task a fresh fork
        results = pool.map(_child_state, range(4))
    for client_was_reset, backends_left, output in results:
        assert client_was_reset and backends_left == 0 and output == "ok\n"
    assert get_backend("docker") is docker_backend  # the parent's own are untouched
    with open_sandbox(docker_backend) as sb:
        assert sb.run("echo ok").stdout == "ok\n"


def _child_state(_: int) -> tuple[bool, int, str]:
    from toolgym.sandbox import engine, open_sandbox
    from toolgym.sandbox import sandbox as sandbox_module

    state = (engine._client is None, len(sandbox_module._backends))
    with open_sandbox("docker") as sb:
        return (*state, sb.run("echo ok").stdout)
