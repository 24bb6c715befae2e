"""The trajectory viewer: a run folder (or two, side by side) as one static HTML page that opens from disk.

`build_view` writes `index.html` (all code inline), `data/index.js` (the compact columns the list, its filters
and counts need), `data/text.js` (the prompts, for search; loaded after the first list) and `data/<run>/NNNN.js`
(the episodes, `CHUNK` to a file, loaded when one is opened). Data files are `<script src>` files, because
browsers refuse `fetch()` of `file://`; they are JSON with `<`, `>` and `&` written as `\\u` escapes, so
agent-written text can never close a script or open a tag, and the page builds its DOM with `textContent` only.
The same run gives the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .runstore import TrajectoryStore, decode_row, is_run_dir
from .trajectory import ERROR_KINDS
from .viewer_page import PAGE

CHUNK = 50
"""Episodes per detail file: one opened episode costs one small file, and a 100,000-episode run is 2,000 files."""
TEXT_CAP = 20_000
"""Characters of one message, result or argument shown; the rest is cut with a note (a 1 MB tool output would
make its chunk, and the page, slow for nothing)."""
PROMPT_CAP = 2_000
"""Characters of a task's user turns kept for search."""
SNIPPET = 160
RUN_NAMES = ("a", "b")
MARKER = "toolgym-view"
"""Written into `data/index.js`: a folder holding it is a view, and may be replaced by the next build."""

# Errors that belong to one tool call: the env server's refusal of that call (its detail is the result text).
CALL_KINDS = ("unknown_tool", "invalid_arguments", "tool_error")


def js_literal(value: Any) -> str:
    """JSON that is safe inside any script: `<`, `>`, `&` and every non-ASCII character as `\\u` escapes
    (U+2028 and U+2029 included), so `</script>` or `<!--` in the data is inert wherever the file is read."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=1, default=str)


def _cap(text: str, cap: int = TEXT_CAP) -> str:
    if len(text) <= cap:
        return text
    return text[:cap] + f"\n... ({len(text) - cap} more characters not shown)"


def _arguments(raw: Any) -> str:
    """A call's arguments as sent (the page pretty-prints them when they are JSON: a third of the build's
    time when done here)."""
    return _cap(raw if isinstance(raw, str) else _text(raw))


def _is_user(msg: dict) -> bool:
    return msg.get("role") in ("user", "developer")


def _step_messages(messages: list[dict], steps: list[dict], malformed: set[int]) -> dict[int, dict]:
    """Which step produced each assistant message: {message index: step}.

    A step reached the environment (and left an assistant message) when the environment spent time on it;
    malformed output, a failing model and a policy's stop leave none. Matched from the end, so assistant
    messages a task itself supplies at the start (a few-shot history) stay unmatched."""
    reached = [s for s in steps if s.get("env_s", 0) > 0 and s.get("index") not in malformed]
    spoken = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    n = min(len(reached), len(spoken))
    return dict(zip(spoken[len(spoken) - n :], reached[len(reached) - n :], strict=True))


def episode_view(row: dict) -> dict:
    """One episode (a decoded row) as the page shows it: a timeline of the conversation with each assistant
    message joined to its step (timings, tokens, errors), each tool result to its call (with its error kind),
    malformed outputs where they happened, and where each reasoning block left the model's context."""
    messages = [m for m in row.get("messages") or [] if isinstance(m, dict)]
    steps = [s for s in row.get("steps") or [] if isinstance(s, dict)]
    malformed = [m for m in row.get("malformed") or [] if isinstance(m, dict)]
    bad_steps = {m.get("step") for m in malformed}
    by_message = _step_messages(messages, steps, bad_steps)
    used_steps = {id(s) for s in by_message.values()}
    pending_bad = sorted(malformed, key=lambda m: m.get("step") or 0)
    turn_of: dict[int, int] = {}
    turn = 0
    for i, m in enumerate(messages):
        if _is_user(m):
            turn += 1
            turn_of[i] = turn
    next_user: list[int | None] = [None] * len(messages)  # the first user message after each message
    for i in range(len(messages) - 2, -1, -1):
        next_user[i] = i + 1 if i + 1 in turn_of else next_user[i + 1]
    items: list[dict] = []
    calls_by_id: dict[str, dict] = {}
    last_step: dict | None = None
    turn = 0

    def flush_malformed(before: int | None) -> None:
        while pending_bad and (before is None or (pending_bad[0].get("step") or 0) < before):
            m = pending_bad.pop(0)
            items.append(
                {
                    "t": "malformed",
                    "step": m.get("step"),
                    "text": _cap(_text(m.get("text"))),
                    "errors": [_cap(_text(e), 2000) for e in m.get("errors") or []],
                }
            )

    for i, msg in enumerate(messages):
        role = msg.get("role")
        content = _cap(_text(msg.get("content")))
        if role == "system":
            items.append({"t": "system", "text": content})
        elif _is_user(msg):
            turn = turn_of[i]
            items.append({"t": "user", "turn": turn, "name": _text(msg.get("name")), "text": content})
        elif role == "assistant":
            step = by_message.get(i)
            if step is not None:
                flush_malformed(step.get("index"))
            reasoning = msg.get("reasoning_content")
            dropped = next_user[i]
            item: dict[str, Any] = {
                "t": "step",
                "step": None if step is None else step.get("index"),
                "turn": turn,
                "text": content,
                "reasoning": None if reasoning in (None, "") else _cap(_text(reasoning)),
                "dropped": None if dropped is None or not reasoning else [turn_of[dropped], dropped],
                "calls": [],
                "errors": [],
            }
            for call in msg.get("tool_calls") or []:
                fn = call.get("function") or {}
                entry = {
                    "id": _text(call.get("id")),
                    "name": _text(fn.get("name")),
                    "args": _arguments(fn.get("arguments")),
                    "result": None,
                    "kind": None,
                }
                item["calls"].append(entry)
                if entry["id"]:
                    calls_by_id[entry["id"]] = entry
            if step is not None:
                item.update(_timing(step))
                item["_errors"] = list(step.get("errors") or [])
            items.append(item)
            last_step = item
        elif role == "tool":
            call = calls_by_id.pop(_text(msg.get("tool_call_id")), None)
            if call is None:
                items.append({"t": "tool", "name": _text(msg.get("name")), "text": content})
                continue
            call["result"] = content
            if last_step is not None:
                for n, err in enumerate(last_step.get("_errors", [])):
                    if err.get("kind") in CALL_KINDS and err.get("detail") == msg.get("content"):
                        call["kind"] = err["kind"]
                        del last_step["_errors"][n]
                        break
    flush_malformed(None)
    for step in steps:  # steps that left no message: a failing model, a policy's stop
        if id(step) not in used_steps and step.get("index") not in bad_steps:
            items.append(
                {
                    "t": "step",
                    "step": step.get("index"),
                    "turn": turn,
                    "text": "",
                    "reasoning": None,
                    "dropped": None,
                    "calls": [],
                    "errors": [],
                    **_timing(step),
                    "_errors": list(step.get("errors") or []),
                }
            )
    for item in items:
        if "_errors" in item:
            item["errors"] = [
                {"kind": _text(e.get("kind")), "detail": _cap(_text(e.get("detail")), 2000)}
                for e in item.pop("_errors")
                if isinstance(e, dict)
            ]
    verdict = row.get("verdict")
    return {
        "key": row.get("key"),
        "task_id": row.get("task_id"),
        "sample": row.get("sample"),
        "env_id": row.get("env_id"),
        "category": row.get("category"),
        "domain": row.get("domain"),
        "difficulty": row.get("difficulty"),
        "policy": row.get("policy"),
        "status": row.get("status"),
        "reward": row.get("reward"),
        "success": bool(row.get("success")),
        "stop_reason": row.get("stop_reason"),
        "terminated": bool(row.get("terminated")),
        "truncated": bool(row.get("truncated")),
        "infra_retries": row.get("infra_retries"),
        "error": _cap(_text(row.get("error")), 4000),
        "answer": _cap(_text(row.get("answer"))),
        "verdict": {
            "reward": verdict.get("reward"),
            "reason": _cap(_text(verdict.get("reason")), 4000),
            "turns": [_text(t) for t in verdict.get("turns") or []][:100],
        }
        if isinstance(verdict, dict)
        else None,
        "tools": [
            _text((t.get("function") or {}).get("name"))
            for t in row.get("tools") or []
            if isinstance(t, dict)
        ],
        "tokens": [row.get("prompt_tokens") or 0, row.get("completion_tokens") or 0],
        "wall_s": _round(row.get("wall_s")),
        "timing": {
            "model_s": _round(sum(float(s.get("policy_s") or 0) for s in steps)),
            "tools_s": _round(sum(float(s.get("env_s") or 0) for s in steps)),
            "loop_s": _round(sum(float(s.get("loop_s") or 0) for s in steps)),
        },
        "items": items,
    }


def _round(x: Any, digits: int = 4) -> float | None:
    try:
        return round(float(x), digits)
    except (TypeError, ValueError):
        return None


def _timing(step: dict) -> dict:
    return {
        "model_s": _round(step.get("policy_s")),
        "tools_s": _round(step.get("env_s")),
        "loop_s": _round(step.get("loop_s")),
        "tokens": [step.get("prompt_tokens") or 0, step.get("completion_tokens") or 0],
        "strategy": step.get("context_strategy"),
    }


# --- the index: what the list, its filters and its search need ------------------------------------------------


class _Table:
    """Strings to small integers, in first-seen order (rows come sorted, so the order is the run's)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def __call__(self, value: Any) -> int:
        key = "" if value is None else str(value)
        if key not in self.ids:
            self.ids[key] = len(self.ids)
        return self.ids[key]

    def names(self) -> list[str]:
        return list(self.ids)


class _Index:
    """The compact columns of every run in a view, sharing one table per kind of string."""

    def __init__(self) -> None:
        self.tables = {name: _Table() for name in ("task", "category", "domain", "status", "stop", "tool")}
        self.errors = _Table()
        for kind in ERROR_KINDS:
            self.errors(kind)
        self.prompts: dict[int, tuple[str, str]] = {}  # task id -> (snippet, search text)

    def episode(self, row: dict, cols: dict[str, list]) -> None:
        t = self.tables
        task = t["task"](row.get("task_id"))
        if task not in self.prompts:
            users = [
                _text(m.get("content"))
                for m in row.get("messages") or []
                if isinstance(m, dict) and _is_user(m)
            ]
            first = " ".join((users[0] if users else "").split())
            self.prompts[task] = (first[:SNIPPET], "\n".join(users)[:PROMPT_CAP])
        errs = 0
        for kind, n in (row.get("errors") or {}).items():
            bit = self.errors(kind)
            if (
                n and bit < 31
            ):  # the page tests 31 bits: kinds past the 31st (never yet) cannot be filtered on
                errs |= 1 << bit
        tools = sorted(
            {
                t["tool"]((c.get("function") or {}).get("name"))
                for m in row.get("messages") or []
                if isinstance(m, dict) and m.get("role") == "assistant"
                for c in m.get("tool_calls") or []
                if isinstance(c, dict)
            }
        )
        reward = _round(row.get("reward"))
        cols["task"].append(task)
        cols["sample"].append(int(row.get("sample") or 0))
        cols["category"].append(t["category"](row.get("category")))
        cols["domain"].append(t["domain"](row.get("domain")))
        cols["difficulty"].append(int(row.get("difficulty") or 0))
        cols["status"].append(t["status"](row.get("status")))
        cols["stop"].append(t["stop"](row.get("stop_reason")))
        cols["reward"].append(reward if reward is not None and reward == reward else 0.0)
        cols["success"].append(1 if row.get("success") else 0)
        cols["steps"].append(int(row.get("n_steps") or 0))
        cols["calls"].append(int(row.get("n_tool_calls") or 0))
        cols["wall"].append(_round(row.get("wall_s"), 2) or 0.0)
        cols["errors"].append(errs)
        cols["tools"].append(tools)


COLUMNS = (
    "task",
    "sample",
    "category",
    "domain",
    "difficulty",
    "status",
    "stop",
    "reward",
    "success",
    "steps",
    "calls",
    "wall",
    "errors",
    "tools",
)


def _raw_rows(run: Path) -> Iterator[dict]:
    """Every row of a run in key order, its JSON columns still text (decoded one at a time while writing).

    A finalized run (shards only, each key once, sorted across shards) is streamed a batch at a time, which
    keeps a 100,000-episode run's memory to one batch; a run with parts (running, killed, or retried keys) is
    read whole through the store, which picks the newest row of each key."""
    import pyarrow.parquet as pq

    store = TrajectoryStore(run)
    shards = sorted(store.shards.glob("*.parquet"))
    if shards and not any(store.parts.glob("*.parquet")) and not (store.root / ".trajectories.old").exists():
        try:
            files = [pq.ParquetFile(f) for f in shards]  # opened now: a finalize renaming them cannot cut us
        except FileNotFoundError:
            files = []
        if files:
            for f in files:
                for batch in f.iter_batches(batch_size=1000):
                    yield from batch.to_pylist()
            return
    yield from store.rows()


def _check_run(run: Path) -> None:
    if not is_run_dir(run):
        raise ValueError(
            f"{run} is not a run folder (no trajectories, parts or plan.json): run "
            f"`toolgym rollout ... --out {run}` first."
        )


def default_out(run: str | Path, compare: str | Path | None = None) -> Path:
    """Where a view goes: `RUN/view`, or `RUN/view-vs-<name of RUN2>` beside it in compare mode."""
    run = Path(run)
    if compare is None:
        return run / "view"
    return run / f"view-vs-{Path(compare).resolve().name}"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _write_run(
    index: _Index, rows: Iterable[dict], folder: Path, name: str, keys: list[str]
) -> tuple[dict[str, list], set[str]]:
    """Write one run's chunk files while filling its index columns; `keys` gets each episode's key in order."""
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    policies: set[str] = set()
    batch: list[dict] = []
    n_chunk = 0

    def flush() -> None:
        nonlocal n_chunk, batch
        if batch:
            _write(
                folder / f"{n_chunk:04d}.js", f"TG.chunk({js_literal(name)},{n_chunk},{js_literal(batch)});\n"
            )
            n_chunk += 1
            batch = []

    for raw in rows:
        row = decode_row(raw) if isinstance(raw.get("messages"), str) else raw
        keys.append(str(row.get("key")))
        policies.add(str(row.get("policy")))
        index.episode(row, cols)
        batch.append(episode_view(row))
        if len(batch) == CHUNK:
            flush()
    flush()
    return cols, policies


def build_view(
    run: str | Path,
    out: str | Path | None = None,
    *,
    compare: str | Path | None = None,
    rows: list[dict] | None = None,
) -> Path:
    """Write the viewer of `run` (and `compare`, side by side) into `out` (default `default_out`); returns the
    page's path. `rows`: the run's rows when the caller has them already (decoded or not), else they are read
    from the folder. The folder is replaced whole, and only when it is a view already (or new, or empty)."""
    run = Path(run)
    runs = [run] + ([Path(compare)] if compare is not None else [])
    for r in runs:
        _check_run(r)
    out = Path(out) if out is not None else default_out(run, compare)
    if out.exists() and not (out / "data" / "index.js").exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not a toolgym view; pass another --out (or remove it).")
    staging = out.with_name(f".{out.name}.new")
    if staging.exists():
        shutil.rmtree(staging)
    index = _Index()
    meta: list[dict] = []
    all_keys: list[list[str]] = []
    try:
        for n, path in enumerate(runs):
            source = rows if (n == 0 and rows is not None) else _raw_rows(path)
            keys: list[str] = []
            cols, policies = _write_run(index, source, staging / "data" / RUN_NAMES[n], RUN_NAMES[n], keys)
            if not keys:
                raise ValueError(
                    f"{path} holds no committed episodes yet: let its rollout run (or run "
                    f"`toolgym rollout ... --out {path}`) first."
                )
            all_keys.append(keys)
            meta.append(
                {"name": path.resolve().name, "dir": RUN_NAMES[n], "policy": sorted(policies), "cols": cols}
            )
            del source
        pairs = _pairs(all_keys)
        prompts = [index.prompts.get(i, ("", "")) for i in range(len(index.tables["task"].ids))]
        data = {
            "format": MARKER,
            "chunk": CHUNK,
            "runs": meta,
            "pairs": pairs,
            "tables": {name: t.names() for name, t in index.tables.items()} | {"error": index.errors.names()},
        }
        _write(staging / "data" / "index.js", f"TG.index({js_literal(data)});\n")
        _write(staging / "data" / "text.js", f"TG.text({js_literal([list(p) for p in prompts])});\n")
        _write(staging / "index.html", PAGE)
        _swap(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out / "index.html"


def _pairs(all_keys: list[list[str]]) -> list[list[int]] | None:
    """Compare mode: the list's rows as [index in run A or -1, index in run B or -1], over the union of keys
    (task, sample), in A's order then B's own; None for a single run (row i is episode i)."""
    if len(all_keys) < 2:
        return None
    a, b = all_keys
    where_b = {k: i for i, k in enumerate(b)}
    seen = set(a)
    out = [[i, where_b.get(k, -1)] for i, k in enumerate(a)]
    out += [[-1, i] for i, k in enumerate(b) if k not in seen]
    return [[p[0] for p in out], [p[1] for p in out]]


def _swap(staging: Path, out: Path) -> None:
    """Put the new view in place of the old one (which goes only once the new one is complete)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    old = out.with_name(f".{out.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)


__all__ = ["CHUNK", "build_view", "default_out", "episode_view", "js_literal"]
