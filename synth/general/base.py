"""What a shape of the general family is, and the helpers every shape shares.

A shape is one kind of service with its own schema, tools and rules (catalogue and orders; calendar slots and
bookings; accounts and a ledger; ...). It renders into many environments: each `Variant` picks one of the
shape's domain vocabularies (a yoga studio and a dental practice are both calendars) and its own rule
parameters and data, all from (seed, shape, index) alone.

A shape's tasks must be worth training on (README, "Tasks worth training on"):
- a shortcut that never reasons (answer from the prompt, one likely call, list and pick the first or the
  cheapest, call every write with the prompt's ids) must not solve them: admission drops what one does;
- rules bind: the service's policy (in the description, not enforced by the tools) changes the right action,
  so an agent must read state before it writes;
- work composes: several writes checked on the final database, plans checked against constraints;
- the user holds information: some tasks keep facts in `user_instructions` that the agent must ask for;
- no false negatives: answers are read by `toolgym_env.same_answer`, states compared by `state_digest`
  (new ids masked), plans by their constraints, never against one expected plan.
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from toolgym.envs.spec import ToolCall

from ..family import Candidate, jinja, render_prompt

LOCALES = ("en_US", "en_GB", "en_AU", "en_CA", "en_IE", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL")


@dataclass(frozen=True)
class Variant:
    """One environment of a shape: its index, the run's seed and the domain vocabulary it uses."""

    shape: str
    index: int
    seed: int
    vocab: dict

    @property
    def domain(self) -> str:
        """The vocabulary's name ("yoga_studio"): the env's domain in the manifest."""
        return self.vocab["name"]

    def rng(self, *label: Any) -> random.Random:
        """A generator fixed by (seed, shape, index, label): the same bytes on every run."""
        return random.Random(":".join(str(x) for x in (self.seed, self.shape, self.index, *label)))


class Shape:
    """The contract of a shape (class attributes and methods; instances hold no state)."""

    NAME: ClassVar[str]
    """snake_case, unique: "calendar_bookings"; env ids are gen_<NAME>_<domain>_vNNN."""
    VOCABS: ClassVar[list[dict]]
    """At least three domain vocabularies; each has "name" (snake_case, unique within the shape) and whatever
    words the shape's tools and prompts use, with realistic entity names (no "Swift Orchard 45")."""

    def build(self, out: Path, v: Variant) -> str:
        """Write tools.py, verify.py and state/ into `out` (which exists); return the env's description: the
        system prompt, with the service's policy in plain sentences."""
        raise NotImplementedError

    def tasks(self, env_dir: Path, v: Variant, n: int) -> list[Candidate]:
        """At most `n` candidates over the built environment, deterministic, no prompt asked twice."""
        raise NotImplementedError

    def harden(self, env_dir: Path, v: Variant, candidate: Candidate, reason: str) -> Candidate | None:
        """A harder version of a candidate admission found too easy (another constraint, a distractor, a fact
        the user holds), or None."""
        return None


# -- building ------------------------------------------------------------------------------------------------
def render(shape: str, template: str, **ctx: Any) -> str:
    """`synth/templates/general/<shape>/<template>` rendered (strict, block tags trimmed)."""
    return jinja(trim=True).get_template(f"general/{shape}/{template}").render(**ctx)


def write_db(path: Path, schema: str, tables: dict[str, list[tuple]]) -> None:
    """Create state/db.sqlite from a schema script and the rows of each table (in order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    db = sqlite3.connect(path)
    db.executescript(schema)
    for table, rows in tables.items():
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    db.commit()
    db.close()


def read_db(env_dir: Path) -> dict[str, list[dict]]:
    """Every table of an environment's state/db.sqlite as lists of dicts, in rowid order (for task makers)."""
    db = sqlite3.connect(Path(env_dir) / "state" / "db.sqlite")
    db.row_factory = sqlite3.Row
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    out = {t: [dict(r) for r in db.execute(f"SELECT * FROM {t} ORDER BY rowid")] for t in names}
    db.close()
    return out


@cache
def _faker(locale: str):
    from faker import Faker

    return Faker(locale)


def people(v: Variant, n: int, label: str = "people") -> list[dict]:
    """`n` distinct people {"name", "email", "phone"} for a variant, in a locale it picks."""
    rng = v.rng(label)
    fake = _faker(LOCALES[rng.randrange(len(LOCALES))])
    fake.seed_instance(rng.randrange(2**31))
    out, emails = [], set()
    while len(out) < n:
        first, last = fake.first_name(), fake.last_name()
        email = f"{first}.{last}{rng.randint(1, 99)}@example.com".lower().replace(" ", "").replace("'", "")
        if email in emails:
            continue
        emails.add(email)
        out.append({"name": f"{first} {last}", "email": email, "phone": f"555-{rng.randint(1000, 9999)}"})
    return out


# -- tasks ---------------------------------------------------------------------------------------------------
def call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(name=name, arguments=arguments)


def candidate(
    shape: str,
    kind: str,
    phrasing: int,
    *,
    level: int,
    prompt: str | list[str],
    verifier: str,
    params: dict,
    solution: list[ToolCall],
    answer: str | None = None,
    guess: str = "",
    user_instructions: str | None = None,
    constraints: int = 0,
    distractors: int = 0,
    user_facts: int = 0,
) -> Candidate:
    """A candidate of a shape. `level` is the shape's own estimate (1..5); the pipeline computes the task's
    level from its measured features: the reference calls, and `constraints` (rules or conditions the task
    must respect), `distractors` (near misses the agent must rule out), `user_facts` (facts only the user
    holds)."""
    return Candidate(
        template=f"general/{shape}/{kind}/{phrasing}",
        difficulty=level,
        prompt=[prompt] if isinstance(prompt, str) else list(prompt),
        verifier=verifier,
        params=params,
        solution=solution,
        answer=answer,
        guess=guess,
        user_instructions=user_instructions,
        extra={
            "features": {"constraints": constraints, "distractors": distractors, "user_facts": user_facts}
        },
    )


def asked_version(c: Candidate) -> Candidate | None:
    """A candidate with its facts moved from the prompt to the user, from the version its maker left in
    `extra["asked"]` ({"kind", "phrasing", "prompt", "user", "facts"}); None where it left none. Shapes use it
    as their `harden` and for their user-held kinds."""
    import copy

    alt = c.extra.get("asked")
    if not alt:
        return None
    shape = c.template.split("/")[1]
    out = copy.deepcopy(c)
    out.template = f"general/{shape}/{alt['kind']}/{alt['phrasing']}"
    out.prompt = [alt["prompt"]]
    out.user_instructions = alt["user"]
    out.difficulty = min(5, c.difficulty + 1)
    out.extra = {**c.extra, "asked": None}
    out.extra["features"] = {**c.extra["features"], "user_facts": alt["facts"]}
    return out


def take_turns(makers: list, v: Variant, n: int, tries: int = 8) -> list[Candidate]:
    """At most `n` candidates from `makers` taken in turn (the k-th call gets `v.rng("task", k)`; a maker returns
    None when the data offers nothing), no prompt asked twice, at most `n * tries` calls."""
    out, seen = [], set()
    for k in range(n * tries):
        if len(out) >= n:
            break
        made = makers[k % len(makers)](v.rng("task", k))
        if made is None or made.prompt[0] in seen:
            continue
        seen.add(made.prompt[0])
        out.append(made)
    return out


def phrase(rng: random.Random, templates: list[str], **slots: Any) -> tuple[int, str]:
    """One of a kind's phrasings, picked by `rng`, rendered (jinja2 syntax): (its index, the text)."""
    i = rng.randrange(len(templates))
    return i, render_prompt(templates[i], **slots)


def a_or_an(word: str) -> str:
    """ "a booking", "an invoice": the article a prompt needs before `word`."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def money(x: float) -> str:
    return f"{x:,.2f}"
