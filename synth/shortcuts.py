"""Shortcut solvers: cheap adversarial policies that never reason, tried on every candidate task at admission.

A task that one of them solves teaches nothing a model should learn, so admission drops it (`admission.py`).
Each solver sees what a policy sees before it thinks: the prompt, the tool schemas (with their access and submit
tags) and, where it needs them, what a few read-only probe calls return. It works in phases: `probes` names the
read calls to make (replayed with `observe=True`), `follow` names a second round of reads built from what the
first returned (only `chain` has one), and `attempts` turns what both returned into final scripts. Every phase
is bounded (MAX_PROBES, MAX_FOLLOWS, MAX_ATTEMPTS) and deterministic.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from itertools import product
from typing import Any, ClassVar

from toolgym.envs.spec import ToolCall

MAX_PROBES = 4
"""Read-only probe calls per shortcut and task."""
MAX_FOLLOWS = 6
"""Second-round read calls (built from first-round results) per shortcut and task."""
MAX_ATTEMPTS = 8
"""Final scripts per shortcut and task."""
DONE = "Done."

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_QUOTED = re.compile(r'"([^"\n]{1,80})"|“([^”\n]{1,80})”|`([^`\n]{1,80})`|(?<!\w)\'([^\'\n]{1,80})\'(?!\w)')
_ID = re.compile(r"\b(?=[A-Za-z-]*\d)[A-Za-z]{1,4}-?\d{2,}\b")
_NUMBER = re.compile(r"(?<![\w.,-])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\w]|\.\d)")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_PATH = re.compile(r"\b[\w-]+(?:/[\w.-]+)*\.[A-Za-z]{1,4}\b")
_NAME = re.compile(r"[A-Z][\w'-]*(?:[ ](?:[A-Z][\w'-]*|\d+\b))*")
_WORD = re.compile(r"[a-z]+")
STOPWORDS = frozenset(
    "a an and are as at be by can could do does for from give has have how i in is it its me my of on or "
    "our please so that the their them then this to was what when where which who why will with would you "
    "your one all any each".split()
)
_QUERY_PARAMS = ("query", "q", "terms", "keywords", "keyword", "text", "search", "phrase", "title", "topic")
_PRICE_KEYS = ("price", "cost", "fee", "amount", "total", "rate")


def stems(text: str) -> frozenset[str]:
    """The content words of `text`, lower-cased, a plural `s` dropped (`list_parts` and "part" meet)."""
    return _stems(text) if len(text) < 2000 else _stems.__wrapped__(text)


@functools.lru_cache(maxsize=65536)
def _stems(text: str) -> frozenset[str]:
    # Cached: the same tool names, descriptions and row values are stemmed for every task of an environment.
    words = _WORD.findall(text.replace("_", " ").lower())
    return frozenset(w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words if w not in STOPWORDS)


def _dedupe(values) -> list:
    seen, out = set(), []
    for v in values:
        # A string is its own key (json.dumps of strings is one-to-one, and no string equals a tuple); anything
        # else keys by its JSON text, so 1, 1.0 and True stay distinct.
        k = v if v.__class__ is str else ("json", json.dumps(v, sort_keys=True))
        if v not in ("", None) and k not in seen:
            seen.add(k)
            out.append(v)
    return out


@dataclass(frozen=True)
class Clues:
    """What regexes read off a prompt, each list in order of first appearance."""

    text: str
    numbers: list[str]
    quoted: list[str]
    ids: list[str]
    emails: list[str]
    names: list[str]
    """Capitalized phrases, several-word ones first ("Silver Canyon 92", "Kolkolost Survey")."""
    dates: list[str]
    paths: list[str]
    free_numbers: list[str] = field(default_factory=list)
    """The numbers outside quoted strings and names ("4" of 'book 4 x "Green Orchard 91"'): quantities."""

    @cached_property
    def words(self) -> set[str]:
        return stems(self.text)

    def value_numbers(self) -> list[float]:
        return [float(n) for n in self.numbers]

    def slot_numbers(self) -> list[float]:
        """Numbers for arguments: the free ones first, then those inside names."""
        return [float(n) for n in _dedupe([*self.free_numbers, *self.numbers])]


def clues(prompt: str) -> Clues:
    """The clues of a prompt. Cached: every shortcut reads the same prompt in each of its phases; the lists of a
    cached Clues are shared, so callers copy before they change one."""
    return _clues(prompt) if len(prompt) < 20000 else _clues.__wrapped__(prompt)


@functools.lru_cache(maxsize=4096)
def _clues(prompt: str) -> Clues:
    emails = _dedupe(_EMAIL.findall(prompt))
    rest = _EMAIL.sub(" ", prompt)
    quoted = _dedupe(next(g for g in m.groups() if g is not None).strip() for m in _QUOTED.finditer(rest))
    ids = _dedupe(_ID.findall(rest))
    dates = _dedupe(_DATE.findall(rest))
    numbers = _dedupe(n.replace(",", "") for n in _NUMBER.findall(_DATE.sub(" ", rest)))
    names = _dedupe(m.group(0).strip() for m in _NAME.finditer(rest))
    starts = {m.end() for m in re.finditer(r"(?:^|[.!?:]\s+|\n)", rest)}
    # In order of appearance (a set here ordered them by string hash: another order in every process).
    initial = _dedupe(
        m.group(0) for m in _NAME.finditer(rest) if m.start() in starts and " " not in m.group(0)
    )
    names = [n for n in names if " " in n] + [n for n in names if " " not in n and n not in initial]
    names += [n for n in initial if n not in names]
    paths = _dedupe(_PATH.findall(rest))
    bare = _NAME.sub(" ", _QUOTED.sub(" ", _DATE.sub(" ", rest)))
    free = _dedupe(n.replace(",", "") for n in _NUMBER.findall(bare))
    names = [n for n in names if n not in ids]
    return Clues(prompt, numbers, quoted, ids, emails, names, dates, paths, free)


def number_text(x: float) -> str:
    """A number as an answer: an integer without decimals, anything else with two (money)."""
    return str(int(round(x))) if abs(x - round(x)) < 1e-9 else f"{x:.2f}"


# -- the environment's tools --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Toolbox:
    """An environment's tools as env.json lists them (OpenAI function dicts with `access` and `submit`)."""

    tools: tuple[dict, ...]
    memo: dict = field(default_factory=dict, compare=False, repr=False)
    """Work the shortcuts share across a candidate's phases (its probes, `chain`'s plan), by key; one admission
    round holds one Toolbox, so this lives as long as the probe results it may refer to."""

    @classmethod
    def of(cls, tools: list[dict]) -> Toolbox:
        return cls(tuple(tools))

    @cached_property
    def submit(self) -> dict | None:
        return next((t["function"] for t in self.tools if t.get("submit")), None)

    @cached_property
    def reads(self) -> list[dict]:
        return [
            t["function"] for t in self.tools if t.get("access", "read") == "read" and not t.get("submit")
        ]

    @cached_property
    def writes(self) -> list[dict]:
        return [t["function"] for t in self.tools if t.get("access") == "write" and not t.get("submit")]

    @cached_property
    def usable(self) -> list[dict]:
        return [t["function"] for t in self.tools if not t.get("submit")]

    def remember(self, key: tuple, make):
        """`make()`, computed once per key for this toolbox."""
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    def is_write(self, name: str) -> bool:
        return any(f["name"] == name for f in self.writes)

    def finish(self, calls: list[ToolCall], answer: str | None) -> tuple[list[ToolCall], str | None]:
        """An attempt's episode: its calls, then the answer through the submit tool when there is one."""
        if self.submit is not None and answer is not None:
            params = self.submit.get("parameters", {})
            slot = next(iter(params.get("required") or params.get("properties") or ["answer"]))
            return [*calls, ToolCall(name=self.submit["name"], arguments={slot: answer})], answer
        return list(calls), answer


def relevance(fn: dict, c: Clues) -> int:
    """How much a tool's name (weighted) and description share with the prompt."""
    name = stems(fn["name"])
    desc = stems(fn.get("description", "")) - name
    return 3 * len(name & c.words) + len(desc & c.words)


# -- arguments from the prompt ------------------------------------------------------------------------------
def _slot_values(name: str, schema: dict, c: Clues, ids: list[str], required: bool, loose: bool) -> list:
    """Values of the prompt that fit one parameter, best first. Optional parameters take only values the prompt
    names for them (an enum value it mentions, an email, an id); `loose` lets numbers into optional ones too."""
    lname = name.lower()
    kind = schema.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}
    if "enum" in schema:
        named = [v for v in schema["enum"] if isinstance(v, str) and stems(v) and stems(v) <= c.words]
        return named or (schema["enum"][:1] if required else [])
    if kinds & {"integer", "number"}:
        if not (required or loose):
            return []
        nums = c.slot_numbers()
        if "integer" in kinds and "number" not in kinds:
            return _dedupe(int(x) for x in nums if x == int(x))
        return _dedupe(int(x) if x == int(x) else x for x in nums)
    if "boolean" in kinds:
        return [True] if required else []
    if kinds & {"array", "object"}:
        return []
    if "email" in lname:
        return c.emails
    if lname == "id" or lname.endswith("_id") or lname.endswith("id"):
        return _dedupe([*ids, *c.ids])
    if "date" in lname or "day" in lname:
        return c.dates if (required or c.dates) else []
    if "path" in lname or "file" in lname:
        return c.paths or (c.quoted if required else [])
    if lname in _QUERY_PARAMS or lname.endswith("name") or lname.endswith("title"):
        return _dedupe([*c.quoted, *c.names])
    if not required:
        return []
    return _dedupe([*c.quoted, *c.names, *c.ids, *c.emails, *c.numbers])


def fillings(
    fn: dict,
    c: Clues,
    ids: list[str] = (),
    limit: int = 4,
    loose: bool = False,
    fixed: dict | None = None,
) -> list[dict]:
    """Up to `limit` argument objects for `fn` from the prompt's values (and `ids` seen in probe results; `fixed`
    values win their slots), the likeliest first; none when a required parameter has nothing to take."""
    params = fn.get("parameters") or {}
    required = set(params.get("required") or [])
    slots = []
    for name, schema in (params.get("properties") or {}).items():
        if fixed and name in fixed:
            slots.append((name, [fixed[name]]))
            continue
        values = _slot_values(name, schema, c, list(ids), name in required, loose)[:3]
        if not values and name in required:
            return []
        if values:
            slots.append((name, values))
    out = []
    for combo in product(*[v for _, v in slots]):
        out.append({name: value for (name, _), value in zip(slots, combo, strict=True)})
        if len(out) >= limit:
            break
    return out or [{}]


# -- reading probe results ----------------------------------------------------------------------------------
def parse(content: str | None) -> Any:
    if content is None:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return content


def rows(value: Any) -> list[dict]:
    """The records of a result: a list of objects, the first list of objects inside an object, or the object."""
    if isinstance(value, list):
        return [r for r in value if isinstance(r, dict)]
    if isinstance(value, dict):
        inner = next(
            (v for v in value.values() if isinstance(v, list) and v and isinstance(v[0], dict)), None
        )
        return [r for r in inner if isinstance(r, dict)] if inner is not None else [value]
    return []


def scalars(value: Any) -> list[str]:
    """Every scalar field of a result as answer text (a record's fields in order; a bare value itself)."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (int, float)):
        return [number_text(value)]
    if isinstance(value, str):
        return [value.strip()]
    recs = rows(value)
    out = []
    for rec in recs[:1]:
        out += [s for v in rec.values() if not isinstance(v, (dict, list)) for s in scalars(v)]
    return _dedupe(out)


def _key(rec: dict, *names: str) -> str | None:
    for n in names:
        if n in rec:
            return n
    return next((k for k in rec if any(k.endswith(n) for n in names)), None)


def row_name(rec: dict) -> str | None:
    k = _key(rec, "name", "title")
    return str(rec[k]) if k is not None and rec[k] is not None else None


def row_id(rec: dict) -> str | None:
    k = _key(rec, "id", "_id")
    return str(rec[k]) if k is not None and rec[k] is not None else None


def row_price(rec: dict) -> float | None:
    k = next((k for k in rec if _price_key(k) and _num(rec[k])), None)
    k = k or next((k for k in rec if _num(rec[k]) and not k.lower().endswith("id")), None)
    return float(rec[k]) if k is not None else None


@functools.lru_cache(maxsize=4096)
def _price_key(name: str) -> bool:
    # Cached: the same few column names come back in every row of every listing.
    low = name.lower()
    return any(p in low for p in _PRICE_KEYS)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def mentions(rec: dict, c: Clues) -> int:
    """How many of the prompt's words a record's text fields hold (the most-named row wins a pick)."""
    text = " ".join(str(v) for v in rec.values() if isinstance(v, str))
    return len(stems(text) & c.words) + sum(2 for q in [*c.quoted, *c.names] if q and q in text)


# -- the shortcuts ------------------------------------------------------------------------------------------
Observed = dict[str, Any]
"""probe call key -> the parsed result (None when the call failed)."""


def call_key(call: ToolCall) -> str:
    return json.dumps([call.name, call.arguments], sort_keys=True)


@dataclass
class Attempt:
    calls: list[ToolCall] = field(default_factory=list)
    answer: str | None = None


class Shortcut:
    """A solver that never reasons. Subclasses set NAME and override `attempts` (and `probes` when they read)."""

    NAME: ClassVar[str]

    def probes(self, c: Clues, tools: Toolbox) -> list[ToolCall]:
        """Read-only calls whose results `attempts` may use (phase 1)."""
        return []

    def follow(self, c: Clues, tools: Toolbox, seen: Observed) -> list[ToolCall]:
        """Read-only calls built from what the probes returned (`seen`), whose results `attempts` may also use."""
        return []

    def attempts(self, c: Clues, tools: Toolbox, seen: Observed) -> list[Attempt]:
        """The final scripts (last phase), likeliest first."""
        raise NotImplementedError

    def scripts(self, prompt: str, tools: Toolbox, seen: Observed) -> list[tuple[list[ToolCall], str | None]]:
        """At most MAX_ATTEMPTS distinct (calls, answer) episodes, the answer through the submit tool if any."""
        out, keys = [], set()
        for a in self.attempts(clues(prompt), tools, seen):
            calls, answer = tools.finish(a.calls, a.answer)
            k = json.dumps([[x.name, x.arguments] for x in calls] + [answer], sort_keys=True)
            if k not in keys:
                keys.add(k)
                out.append((calls, answer))
            if len(out) >= MAX_ATTEMPTS:
                break
        return out

    def probe_calls(self, prompt: str, tools: Toolbox) -> list[ToolCall]:
        # Remembered: the probes depend on the prompt and the tools only, and the later phases ask for them again.
        made = tools.remember(
            (self.NAME, "probes", prompt), lambda: self.probes(clues(prompt), tools)[:MAX_PROBES]
        )
        return list(made)

    def follow_calls(self, prompt: str, tools: Toolbox, seen: Observed) -> list[ToolCall]:
        reads = {fn["name"] for fn in tools.reads}
        return [x for x in self.follow(clues(prompt), tools, seen) if x.name in reads][:MAX_FOLLOWS]


class PromptOnly(Shortcut):
    """Answers from the prompt alone: two numbers' product, sum and difference, quoted strings, ids, emails,
    every number."""

    NAME = "prompt_only"

    def attempts(self, c: Clues, tools: Toolbox, seen: Observed) -> list[Attempt]:
        nums = c.value_numbers()
        answers = []
        if len(nums) >= 2:
            a, b = nums[0], nums[1]
            answers += [number_text(a * b), number_text(a + b), number_text(abs(a - b))]
        answers += [*c.quoted, *c.ids, *c.emails, *c.numbers]
        return [Attempt([], a) for a in _dedupe(answers)]


class CopyNumber(Shortcut):
    """Answers with the prompt's first number, then its last."""

    NAME = "copy_number"

    def attempts(self, c: Clues, tools: Toolbox, seen: Observed) -> list[Attempt]:
        return [Attempt([], n) for n in _dedupe(c.numbers[:1] + c.numbers[-1:])]


class OneCall(Shortcut):
    """Makes the one call whose tool looks likeliest (name and description against the prompt), its arguments
    from the prompt, and answers with each scalar field of the result (a write: the call is the answer)."""

    NAME = "one_call"
    FILLINGS = 2

    def _best(self, c: Clues, tools: Toolbox) -> dict | None:
        usable = tools.usable
        if not usable:
            return None
        return max(usable, key=lambda fn: (relevance(fn, c), -usable.index(fn)))

    def _calls(self, c: Clues, tools: Toolbox) -> list[ToolCall]:
        fn = self._best(c, tools)
        if fn is None:
            return []
        return [ToolCall(name=fn["name"], arguments=a) for a in fillings(fn, c, limit=self.FILLINGS)]

    def probes(self, c: Clues, tools: Toolbox) -> list[ToolCall]:
        return [x for x in self._calls(c, tools) if not tools.is_write(x.name)]

    def attempts(self, c: Clues, tools: Toolbox, seen: Observed) -> list[Attempt]:
        out = []
        for call in self._calls(c, tools):
            if tools.is_write(call.name):
                out.append(Attempt([call], DONE))
                continue
            value = seen.get(call_key(call))
            out += [Attempt([call], s) for s in scalars(value)]
            if isinstance(value, list):
                out.append(Attempt([call], str(len(value))))
        return out


class ListPick(Shortcut):
    """Calls the listing tools, picks the most-named, cheapest, dearest, first or last row (of all rows, or of
    those whose fields name a word of the prompt, such as a category), and answers its name or price, or a
    count (all rows, or those above or below a prompt number); or hands the picked row's id to a lookup or
    to each write tool. Cue words of the prompt ("cheapest", "how many") only order the attempts."""

    NAME = "list_pick"
    LISTING = ("list", "search", "find", "browse", "all")
    CUES = {
        "cheapest": ("cheap", "lowest", "least", "smallest", "minimum"),
        "dearest": ("expensive", "dearest", "highest", "largest", "maximum", "priciest"),
        "count": ("many", "count", "number"),
        "price": ("price", "cost", "much", "fee", "charge", "total"),
    }

    def probes(self, c: Clues, tools: Toolbox) -> list[ToolCall]:
        fns = sorted(
            tools.reads,
            key=lambda fn: (not (set(fn["name"].split("_")) & set(self.LISTING)), -relevance(fn, c)),
        )
        out = []
        for fn in fns:
            args = fillings(fn, c, limit=1)
            if args:
                out.append(ToolCall(name=fn["name"], arguments=args[0]))
        return out[:MAX_PROBES]

    def _cued(self, c: Clues) -> set[str]:
        text = c.text.lower()
        return {k for k, words in self.CUES.items() if any(w in text for w in words)}

    def attempts(self, c: Clues, tools: Toolbox, seen: Observed) -> list[Attempt]:
        listed = [(x, rows(seen.get(call_key(x)))) for x in self.probe_calls(c.text, tools)]
        listed = [(x, recs) for x, recs in listed if recs]
        sources = [(x.name, recs[0]) for x, recs in listed if len(recs) == 1]
        cued = self._cued(c)
        ranked: list[tuple[int, int, Attempt]] = []  # (priority, order, attempt)

        def add(priority: int, kind: str, attempt: Attempt) -> None:
            ranked.append((priority - (10 if kind in cued else 0), len(ranked), attempt))

        for call, recs in listed:
            if len(recs) == 1:
                continue  # a lookup (the actor by email), not a listing: only a source of ids for writes
            focus = focused(recs, c) or recs
            priced = [r for r in focus if row_price(r) is not None]
            most = max(recs, key=lambda r: (mentions(r, c), -recs.index(r)))
            picks = {"most": most, "first": focus[0], "last": focus[-1]}
            if priced:
                picks["cheapest"] = min(priced, key=row_price)
                picks["dearest"] = max(priced, key=row_price)
            for kind in ("cheapest", "dearest"):
                if kind in picks and row_name(picks[kind]):
                    add(1, kind, Attempt([call], row_name(picks[kind])))
            add(2, "count", Attempt([call], str(len(focus))))
            for x in c.value_numbers()[:2]:
                add(3, "count", Attempt([call], str(sum(row_price(r) > x for r in priced))))
                add(4, "count", Attempt([call], str(sum(row_price(r) < x for r in priced))))
            if row_price(most) is not None:
                add(3, "price", Attempt([call], number_text(row_price(most))))
                for get in self._lookups(call, most, tools):
                    add(2, "price", Attempt([call, get], number_text(row_price(most))))
            if row_name(most):
                add(5, "most", Attempt([call], row_name(most)))
            for kind in ("most", "cheapest"):
                if kind in picks and row_id(picks[kind]):
                    for a in self._writes(call, picks[kind], sources, c, tools):
                        named = stems(a.calls[-1].name) & c.words  # "book" in the prompt and the tool
                        add(3 - (10 if named else 0), "write", a)
            for kind in ("first", "last"):
                if row_name(picks[kind]):
                    add(6, kind, Attempt([call], row_name(picks[kind])))
        return [a for *_, a in sorted(ranked, key=lambda x: x[:2])]

    def _lookups(self, call: ToolCall, rec: dict, tools: Toolbox) -> list[ToolCall]:
        """Each read tool of the listing's entity ("get_room" for "list_rooms") whose only required argument is
        an id, given the row's id."""
        out = []
        entity = stems(call.name) - set(self.LISTING)
        for fn in tools.reads:
            params = fn.get("parameters") or {}
            req = list(params.get("required") or [])
            if (
                fn["name"] != call.name
                and len(req) == 1
                and req[0].lower().endswith("id")
                and stems(fn["name"]) & entity
            ):
                out.append(ToolCall(name=fn["name"], arguments={req[0]: row_id(rec)}))
        return out

    def _writes(self, call: ToolCall, rec: dict, sources: list, c: Clues, tools: Toolbox) -> list[Attempt]:
        """Each write tool, its id slots filled from the probe whose tool name is nearest the slot's name (the
        picked row for the listing itself), the rest from the prompt."""
        options = [(call.name, rec), *sources]
        out = []
        for fn in tools.writes:
            fixed = {}
            for name in (fn.get("parameters") or {}).get("properties") or {}:
                if not name.lower().endswith("id"):
                    continue
                want = stems(name) - {"id"}
                tool, src = max(options, key=lambda o: (len(stems(o[0]) & want), o[1] is rec))
                if row_id(src):
                    fixed[name] = row_id(src)
            args = fillings(fn, c, limit=1, fixed=fixed)
            if args:
                out.append(Attempt([call, ToolCall(name=fn["name"], arguments=args[0])], DONE))
        return out


def focused(recs: list[dict], c: Clues) -> list[dict]:
    """The rows one of whose short text fields the prompt names as a whole ("kids", "whole_blood"): a category
    filter read off the prompt; empty when no row has one."""
    out = []
    for r in recs:
        for k, v in r.items():
            if isinstance(v, str) and k != _key(r, "name", "title") and 0 < len(v.split()) <= 3:
                words = stems(v)
                if words and words <= c.words:
                    out.append(r)
                    break
    return out if len(out) < len(recs) else []


class WriteAll(Shortcut):
    """Calls every write tool with the prompt's ids, names and numbers in every slot that fits (a bounded
    number of fillings), then declares the job done."""

    NAME = "write_all"

    def attempts(self, c: Clues, tools: Toolbox, seen: Observed) -> list[Attempt]:
        per_tool = [
            [ToolCall(name=fn["name"], arguments=a) for a in fillings(fn, c, limit=MAX_ATTEMPTS, loose=True)]
            for fn in tools.writes
        ]
        per_tool = [calls for calls in per_tool if calls]
        if not per_tool:
            return []
        depth = max(len(calls) for calls in per_tool)
        return [Attempt([calls[k % len(calls)] for calls in per_tool], DONE) for k in range(depth)]


@functools.lru_cache(maxsize=4096)
def id_field(name: str) -> bool:
    """An id-like field or parameter: `id`, `customer_id`, `slotId`."""
    low = name.lower()
    return low == "id" or low.endswith("_id") or name.endswith("Id")


_VERBS = frozenset(
    {"get", "find", "list", "search", "browse", "lookup", "look", "show", "fetch", "read", "all"}
)
"""Words of a tool's name that say what it does, not what it returns."""


def _noun(field_name: str, tool: str) -> set[str]:
    """What an id names: `customer_id` -> {"customer"}; a bare `id` names the noun of the tool that returned it
    (`find_customer`, `list_accounts`), less the tool's verb."""
    if field_name.lower() == "id":
        return stems(tool) - _VERBS
    return stems(re.sub(r"(?<=[a-z])(?=[A-Z])", "_", field_name)) - {"id"}


@dataclass(frozen=True)
class Found:
    """An id seen in a result: what it names, its value, the call that returned it and the row it sits in."""

    noun: frozenset
    value: Any
    source: ToolCall
    row: dict


def row_ids(rec: dict, call: ToolCall) -> list[Found]:
    """The id fields of one row `call` returned."""
    return [
        Found(frozenset(_noun(k, call.name)), v, call, rec)
        for k, v in rec.items()
        if id_field(k) and isinstance(v, (str, int)) and not isinstance(v, bool) and v != ""
    ]


def found_ids(calls: list[ToolCall], seen: Observed, c: Clues) -> list[Found]:
    """Every id field of the rows `calls` returned: the rows the prompt names most first (the technician it
    names, wherever listed), then in call and row order."""
    ranked = []
    for n, call in enumerate(calls):
        for k, rec in enumerate(rows(seen.get(call_key(call)))):
            ranked.append((-mentions(rec, c), n, k, row_ids(rec, call)))
    return [f for *_, found in sorted(ranked, key=lambda x: x[:3]) for f in found]


def numeric_columns(recs: list[dict], c: Clues) -> list[str]:
    """The numeric columns of `recs` that are not ids: those the prompt names first, then price-like ones."""
    cols = _dedupe(k for r in recs for k, v in r.items() if _num(v) and not id_field(k))
    return sorted(
        cols,
        key=lambda k: (not (stems(k) & c.words), not _price_key(k), cols.index(k)),
    )


def _as_param(value: Any, schema: dict) -> Any:
    kind = schema.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}
    if "string" in kinds:
        return str(value)
    if "integer" in kinds and str(value).lstrip("-").isdigit():
        return int(value)
    return value


def id_fill(fn: dict, found: list[Found], c: Clues, per_slot: int = 1) -> list[tuple[dict, list[Found]]]:
    """Argument objects for `fn` whose id slots take ids of `found` that name the same thing (`customer_id` <-
    the `id` of `find_customer`'s row, or a row's own `customer_id`), the rest from the prompt; the first matched
    slot takes up to `per_slot` values. Each object comes with the ids it used; none when no slot matched."""
    props = (fn.get("parameters") or {}).get("properties") or {}
    matched: dict[str, list[Found]] = {}
    for name in props:
        if not id_field(name):
            continue
        want = _noun(name, fn["name"])
        hits, values = [], set()
        for f in found:
            key = (f.value.__class__ is str, f.value)  # a found id is a str or an int: "7" and 7 differ
            if want & f.noun and key not in values:
                values.add(key)
                hits.append(f)
        if hits:
            matched[name] = hits
    if not matched:
        return []
    lead, *rest = matched
    out = []
    for f in matched[lead][:per_slot]:
        used = [f, *(matched[r][0] for r in rest)]
        fixed = {name: _as_param(u.value, props[name]) for name, u in zip(matched, used, strict=True)}
        args = fillings(fn, c, limit=1, fixed=fixed)
        if args:
            out.append((args[0], used))
    return out


class Chain(Shortcut):
    """Follows ids without reasoning: looks up what the prompt names (by email, id, name), calls each read tool
    whose id arguments the first results fill (the customer's `id` into `list_orders(customer_id)`), then answers
    with an aggregate of the second result's rows (sum, count, least, most or mean of a numeric column; the name
    of the first, last, cheapest or dearest row), of all of them or of those a prompt word names (a status, a
    category), or calls a write tool with a second-round row's ids (the first row's, or every row's)."""

    NAME = "chain"
    PER_TOOL = 2
    """Second-round calls per read tool (ids of different first-round rows)."""
    EVERY_ROW_MAX = 8
    """Calls of the one write tool when it is applied to every row."""
    CUES = {
        "sum": ("total", "sum", "altogether", "together", "add up", "combined", "in all", "spent", "owe"),
        "count": ("how many", "count", "number of"),
        "min": ListPick.CUES["cheapest"],
        "max": ListPick.CUES["dearest"],
        "mean": ("average", "mean", "typical"),
    }
    AGGREGATES = {
        "sum": sum,
        "min": min,
        "max": max,
        "mean": lambda xs: sum(xs) / len(xs),
    }

    def probes(self, c: Clues, tools: Toolbox) -> list[ToolCall]:
        """Lookups whose required arguments the prompt fills, likeliest first, then argument-free listings."""
        lookups, listings = [], []
        for fn in sorted(tools.reads, key=lambda fn: -relevance(fn, c)):
            required = (fn.get("parameters") or {}).get("required") or []
            args = fillings(fn, c, limit=1)
            if args:
                (lookups if required else listings).append(ToolCall(name=fn["name"], arguments=args[0]))
        return (lookups + listings)[:MAX_PROBES]

    def _plan(
        self, c: Clues, tools: Toolbox, seen: Observed
    ) -> tuple[list[tuple[ToolCall, ToolCall]], list[Found]]:
        """(first-round call, second-round call) pairs: each read tool, likeliest first, with ids the first round
        returned; and those ids. Both phases ask for it: it is made once while the first round's results are the
        same objects (the second round's `seen` holds the first's)."""
        firsts = self.probe_calls(c.text, tools)
        results = [seen.get(call_key(x)) for x in firsts]
        held = tools.memo.get((self.NAME, "plan", c.text))
        if held is not None and all(a is b for a, b in zip(held[0], results, strict=True)):
            return held[1], held[2]
        plan = self._make_plan(c, tools, seen, firsts)
        tools.memo[(self.NAME, "plan", c.text)] = (results, *plan)
        return plan

    def _make_plan(
        self, c: Clues, tools: Toolbox, seen: Observed, firsts: list[ToolCall]
    ) -> tuple[list[tuple[ToolCall, ToolCall]], list[Found]]:
        done = {call_key(x) for x in firsts}
        found = found_ids(firsts, seen, c)
        out = []
        for fn in sorted(tools.reads, key=lambda fn: -relevance(fn, c)):
            for args, used in id_fill(fn, found, c, per_slot=self.PER_TOOL):
                call = ToolCall(name=fn["name"], arguments=args)
                if call_key(call) not in done:
                    done.add(call_key(call))
                    out.append((used[0].source, call))
        return out[:MAX_FOLLOWS], found

    def follow(self, c: Clues, tools: Toolbox, seen: Observed) -> list[ToolCall]:
        return [second for _, second in self._plan(c, tools, seen)[0]]

    def _cued(self, c: Clues) -> set[str]:
        text = c.text.lower()
        return {k for k, words in self.CUES.items() if any(w in text for w in words)}

    def attempts(self, c: Clues, tools: Toolbox, seen: Observed) -> list[Attempt]:
        cued = self._cued(c)
        ranked: list[tuple[int, int, Attempt]] = []  # (priority, order, attempt)

        def add(priority: int, kind: str, attempt: Attempt) -> None:
            ranked.append((priority - (10 if kind in cued else 0), len(ranked), attempt))

        plan, firsts = self._plan(c, tools, seen)
        for first, second in plan:
            recs = rows(seen.get(call_key(second)))
            if not recs:
                continue
            calls = [first, second]
            named = focused(recs, c)
            for focus, bonus in ((named, -1), (recs, 0)):
                if focus:
                    self._answers(focus, c, calls, bonus, add)
            picked = sorted(named or recs, key=lambda r: (-mentions(r, c), recs.index(r)))
            self._writes(picked, firsts, c, tools, calls, add)
        return [a for *_, a in sorted(ranked, key=lambda x: x[:2])]

    def _answers(self, recs: list[dict], c: Clues, calls: list[ToolCall], bonus: int, add) -> None:
        add(3 + bonus, "count", Attempt(calls, str(len(recs))))
        for rank, col in enumerate(numeric_columns(recs, c)):
            xs = [float(r[col]) for r in recs if _num(r.get(col))]
            for kind, agg in self.AGGREGATES.items():
                base = {"sum": 2, "min": 4, "max": 4, "mean": 5}[kind]
                add(base + bonus + min(rank, 3), kind, Attempt(calls, number_text(agg(xs))))
        priced = [r for r in recs if row_price(r) is not None]
        picks = {"first": recs[0], "last": recs[-1]}
        if priced:
            picks["min"] = min(priced, key=row_price)
            picks["max"] = max(priced, key=row_price)
        for kind, rec in picks.items():
            if row_name(rec):
                add((4 if kind in ("min", "max") else 6) + bonus, kind, Attempt(calls, row_name(rec)))
        if len(recs) == 1:
            # a record, not a list: each of its text fields may be the answer (a tier, a status, a date)
            for k, v in recs[0].items():
                if isinstance(v, str) and v and not id_field(k):
                    add(5 + bonus, "field", Attempt(calls, v))

    def _writes(
        self, recs: list[dict], firsts: list[Found], c: Clues, tools: Toolbox, calls: list, add
    ) -> None:
        """Each write tool with the first row's ids (`recs` hold the rows the prompt names most first; ids of the
        first round fill the slots no row fills: the customer found by email); the write tool the prompt names
        most, once for every row."""
        second = calls[-1]
        writes = sorted(tools.writes, key=lambda fn: -relevance(fn, c))
        for n, fn in enumerate(writes):
            per_row = []
            for rec in recs[: self.EVERY_ROW_MAX if n == 0 else 1]:
                filled = id_fill(fn, [*row_ids(rec, second), *firsts], c)
                if filled:
                    per_row.append(ToolCall(name=fn["name"], arguments=filled[0][0]))
            if not per_row:
                continue
            named = bool(stems(fn["name"]) & c.words)
            add(3 - (10 if named else 0), "write", Attempt([*calls, per_row[0]], DONE))
            every = list({call_key(x): x for x in per_row}.values())
            if len(every) > 1:
                add(4 - (10 if named else 0), "write", Attempt([*calls, *every], DONE))


SHORTCUTS: tuple[Shortcut, ...] = (PromptOnly(), CopyNumber(), OneCall(), ListPick(), WriteAll(), Chain())
"""Every shortcut admission tries, in the order a solved task is counted under the first that solved it."""
NAMES = tuple(s.NAME for s in SHORTCUTS)
