"""Progress for long jobs: a tqdm bar on a terminal, plain lines in a log.

A bar redraws itself with carriage returns, which is right on a terminal and thousands of lines of noise in a
file. `Progress` picks by the stream: on a TTY a bar, elsewhere one line at most every `every_s` seconds and a
final line, each with the counts, the rate, the caller's figures (success so far, ...) and the time left:

    rollout: 120/2000 ep (6.0%), 3.1 ep/s, success 45.0%, ETA 10m05s

Modes (`--progress` on the command line): "auto" (bar on a TTY, else lines), "bar", "lines", "none".
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TextIO

MODES = ("auto", "bar", "lines", "none")


def resolve_mode(value: str | bool | None) -> str:
    """The mode named by `value`: one of MODES, or a bool as the older `progress=` flags took it (True: "auto",
    False or None: "none"). Raises ValueError on anything else."""
    if value is True:
        return "auto"
    if value is False or value is None:
        return "none"
    if isinstance(value, str) and value in MODES:
        return value
    raise ValueError(f"progress must be one of auto, bar, lines or none, not {value!r}.")


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def duration(seconds: float) -> str:
    """45s, 10m05s, 2h03m."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Progress of `total` items (`initial` of them done before this run began).

    `update(n=1, **postfix)` counts n more (and, given figures, replaces the shown ones); `set_postfix(**kv)`
    replaces them alone; `close()` ends it (in lines mode with a final line). A context manager; `track(it)`
    wraps an iterable. `stream` defaults to the current sys.stderr; `clock` (seconds, monotonic) is for tests.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        mode: str | bool | None = "auto",
        every_s: float = 10.0,
        stream: TextIO | None = None,
        initial: int = 0,
        *,
        leave: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.every_s = every_s
        self.stream = stream if stream is not None else sys.stderr
        self.initial = self.n = initial
        self.postfix: dict[str, Any] = {}
        self._clock = clock
        self._started = self._last = clock()
        self._closed = False
        self._bar = None
        mode = resolve_mode(mode)
        if mode == "auto":
            mode = "bar" if _is_tty(self.stream) else "lines"
        if mode == "bar":
            try:
                from tqdm import tqdm
            except ImportError:  # tqdm is a dependency, but a log is still better than nothing
                mode = "lines"
            else:
                self._bar = tqdm(
                    total=total,
                    desc=desc,
                    unit=unit,
                    initial=initial,
                    file=self.stream,
                    dynamic_ncols=True,
                    leave=leave,
                )
        self.mode = mode

    # -- counting ---------------------------------------------------------------------------------------

    def update(self, n: int = 1, **postfix: Any) -> None:
        self.n += n
        if postfix:
            self.postfix = dict(postfix)
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(self.postfix, refresh=False)
            self._bar.update(n)
        elif self.mode == "lines" and not self._closed and not (self.total and self.n >= self.total):
            now = self._clock()  # (at the total the final line says it all)
            if now - self._last >= self.every_s:
                self._last = now
                self._write(self.line(now))

    def set_postfix(self, _figures: Mapping[str, Any] | None = None, /, **kv: Any) -> None:
        """Replace the figures shown after the counts (a mapping, as tqdm's set_postfix takes, or keywords)."""
        self.postfix = {**(_figures or {}), **kv}
        if self._bar is not None:
            self._bar.set_postfix(self.postfix)

    def track(self, iterable: Iterable) -> Iterator:
        """Yield the items of `iterable`, counting each once it is handed out; closes at the end."""
        try:
            for item in iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "lines":
            self._write(self.line(self._clock(), final=True))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the line ---------------------------------------------------------------------------------------

    def line(self, now: float | None = None, final: bool = False) -> str:
        """`desc: n/total unit (pct), rate, figures, ETA` (final: the time taken instead of the ETA)."""
        now = self._clock() if now is None else now
        elapsed = max(now - self._started, 1e-9)
        done = self.n - self.initial
        parts = [f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.1f}%)"
        rate = done / elapsed
        if done > 0:
            parts.append(f"{rate:.1f} {self.unit}/s" if rate >= 0.1 else f"{1 / rate:.1f} s/{self.unit}")
        parts += [f"{k} {v}" for k, v in self.postfix.items()]
        if final:
            parts.append(f"in {duration(elapsed)}")
        elif self.total and done > 0:
            parts.append(f"ETA {duration(max(self.total - self.n, 0) / rate)}")
        return f"{self.desc}: " + ", ".join(parts)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken log must not end the job
            pass


def track(
    iterable: Iterable, total: int | None, desc: str, unit: str = "it", mode: str | bool | None = "auto", **kw
) -> Iterator:
    """`Progress(total, desc, unit, mode, **kw).track(iterable)`; with mode "none" the iterable itself."""
    if resolve_mode(mode) == "none":
        return iter(iterable)
    return Progress(total, desc, unit, mode, **kw).track(iterable)


__all__ = ["MODES", "Progress", "duration", "resolve_mode", "track"]
