"""A warm pool of sandboxes: N ready to hand out, each recycled after its episode and checked before reuse.

Recycling after an episode is either a verified reset (the in-sandbox server, PID 1 and non-dumpable, kills
every other process, empties /workspace, /tmp, shared memory and IPC, then checks that all of it is gone) or a
fresh sandbox. `recycle` picks: "reset" (default, fresh only when a reset does not verify), "fresh" (always a
new sandbox), or "auto" (reset only when the episode ran no agent code).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass

from .backend import Backend
from .errors import SandboxError, SandboxUnavailable
from .limits import Limits
from .requirements import check_hashes
from .sandbox import Sandbox, get_backend, open_sandbox

log = logging.getLogger(__name__)
RECYCLE_POLICIES = ("reset", "fresh", "auto")


@dataclass
class PoolStats:
    created: int = 0
    """Sandboxes started (initial fill and replacements)."""
    reset: int = 0
    """Episodes recycled by a verified reset."""
    replaced: int = 0
    """Episodes recycled by a fresh sandbox (policy, failed reset or failed health check)."""
    unhealthy: int = 0
    """Sandboxes found dead at hand-out and discarded."""
    start_failures: int = 0


class SandboxPool:
    """Keeps `size` sandboxes warm. Async: `sb = await pool.acquire()` ... `await pool.release(sb)`.

    `requirements`: hashes of prepared requirement sets that every sandbox of the pool holds."""

    def __init__(
        self,
        size: int = 8,
        *,
        backend: str | Backend = "auto",
        limits: Limits | None = None,
        image: str | None = None,
        recycle: str = "reset",
        run_id: str | None = None,
        mounts: dict[str, str] | None = None,
        requirements: Iterable[str] = (),
        max_parallel_starts: int = 4,
    ) -> None:
        if size < 1:
            raise ValueError("SandboxPool size must be at least 1")
        if recycle not in RECYCLE_POLICIES:
            raise ValueError(f"recycle must be one of {', '.join(RECYCLE_POLICIES)}, not {recycle!r}")
        self.size = size
        self.limits = (limits or Limits()).validate()
        self.backend = get_backend(backend, image) if isinstance(backend, str) else backend
        self.recycle = recycle
        self.run_id = run_id
        self.mounts = mounts
        self.requirements = check_hashes(requirements)
        """Requirement set hashes every sandbox of the pool holds (see open_sandbox)."""
        self.stats = PoolStats()
        self._ready: asyncio.Queue[Sandbox] | None = None
        self._starts: asyncio.Semaphore | None = None
        self._max_parallel_starts = max_parallel_starts
        self._tasks: set[asyncio.Task] = set()
        self._all: set[Sandbox] = set()
        self._leased: set[Sandbox] = set()
        self._failures = 0
        self._last_error: Exception | None = None
        self._closed = False

    async def start(self) -> SandboxPool:
        """Fill the pool and wait until every sandbox is ready."""
        self._ready = asyncio.Queue()
        self._starts = asyncio.Semaphore(self._max_parallel_starts)
        results = await asyncio.gather(*(self._create() for _ in range(self.size)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        if len(errors) == self.size:
            await self.close()
            raise errors[0]
        for _ in errors:
            self._spawn(self._replace())
        return self

    async def __aenter__(self) -> SandboxPool:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _create(self) -> Sandbox:
        async with self._starts:
            sb = await asyncio.to_thread(
                open_sandbox,
                self.backend,
                self.limits,
                run_id=self.run_id,
                mounts=self.mounts,
                requirements=self.requirements,
            )
        self.stats.created += 1
        if self._closed:
            await asyncio.to_thread(sb.close)
            raise SandboxError("the pool was closed")
        self._all.add(sb)
        self._ready.put_nowait(sb)
        return sb

    async def _replace(self) -> None:
        delay = 0.1
        while not self._closed:
            try:
                await self._create()
                self._failures = 0
                return
            except Exception as exc:  # noqa: BLE001 - retried; acquire() reports it if it persists
                self._failures += 1
                self._last_error = exc
                self.stats.start_failures += 1
                log.warning("sandbox start failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def acquire(self, timeout: float | None = None) -> Sandbox:
        """A clean, answering sandbox; waits for one when all are in use."""
        if self._ready is None:
            raise SandboxError(
                "the pool is not started: use `async with SandboxPool(...)` or `await pool.start()`"
            )
        while True:
            if self._failures >= 3 and self._ready.empty():
                raise SandboxUnavailable(f"the pool cannot start sandboxes: {self._last_error}")
            sb = await asyncio.wait_for(self._ready.get(), timeout)
            try:
                await asyncio.to_thread(sb.ping)
            except SandboxError:
                self.stats.unhealthy += 1
                await self._discard(sb)
                continue
            self._leased.add(sb)
            return sb

    async def release(self, sb: Sandbox, *, broken: bool = False) -> None:
        """Give a sandbox back. It is recycled in the background; `broken=True` forces a fresh one."""
        self._leased.discard(sb)
        if self._closed:
            await self._discard(sb, replace=False)
            return
        fresh = broken or self.recycle == "fresh" or (self.recycle == "auto" and sb.tainted)
        self._spawn(self._recycle(sb, fresh))

    async def _recycle(self, sb: Sandbox, fresh: bool) -> None:
        if not fresh:
            try:
                await asyncio.to_thread(sb.reset)
                self.stats.reset += 1
                self._ready.put_nowait(sb)
                return
            except SandboxError as exc:
                log.warning("reset of %s did not verify (%s); replacing it", sb, exc)
        self.stats.replaced += 1
        await self._discard(sb)

    async def _discard(self, sb: Sandbox, replace: bool = True) -> None:
        self._all.discard(sb)
        await asyncio.to_thread(sb.close)
        if replace and not self._closed:
            self._spawn(self._replace())

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[Sandbox]:
        """`async with pool.lease() as sb:` acquires and always releases (as broken if the block raised)."""
        sb = await self.acquire()
        ok = False
        try:
            yield sb
            ok = True
        finally:
            await self.release(sb, broken=not ok)

    @property
    def ready(self) -> int:
        return self._ready.qsize() if self._ready is not None else 0

    async def close(self) -> None:
        """Remove every sandbox of the pool, leased ones included."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        sandboxes = list(self._all)
        self._all.clear()
        await asyncio.gather(*(asyncio.to_thread(sb.close) for sb in sandboxes), return_exceptions=True)


class BlockingSandboxPool:
    """The same pool for synchronous code (same arguments): its event loop runs on a private thread."""

    def __init__(self, size: int = 8, **kwargs) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="toolgym-pool", daemon=True)
        self._thread.start()
        self.pool = SandboxPool(size, **kwargs)
        try:
            self._call(self.pool.start())
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def acquire(self, timeout: float | None = None) -> Sandbox:
        return self._call(self.pool.acquire(timeout))

    def release(self, sb: Sandbox, *, broken: bool = False) -> None:
        self._call(self.pool.release(sb, broken=broken))

    @contextlib.contextmanager
    def lease(self) -> Iterator[Sandbox]:
        sb = self.acquire()
        ok = False
        try:
            yield sb
            ok = True
        finally:
            self.release(sb, broken=not ok)

    @property
    def stats(self) -> PoolStats:
        return self.pool.stats

    def close(self) -> None:
        try:
            self._call(self.pool.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> BlockingSandboxPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
