"""The search family: the reference search environment (reference/search) generalized over themes and
variants. Each environment is an archive of generated long-tail entities (SQLite FTS5, state/db.sqlite) whose
documents chain five entity types (a company -> its founder -> the founder's birthplace -> its river -> where
the river rises), each document naming its next link plus a look-alike trap; questions follow the chain.

Themes are data (`themes.py`: five entity types (name patterns, founding-year verb) and four relations (the
sentence that states a link, a trap sentence naming another entity of the same type, and the noun phrase that
asks for the link); `corpus.py` writes the archive. One engine renders every theme; a variant fixes

- the tool set: search by count `k`, by page or a fixed top-N; snippet length (or none); optional
  `find_in_document` and `search_titles` tools; an optional submit tool; tool and argument names;
- the rules: which evidence each hop's document needs (opened, opened or searched inside, or its entity
  searched for by name) and whether the answer must be submitted with the submit tool;
- the data: corpus size (60..300 documents), look-alike density, the syllables of names, document id format.

Answers: variants with a submit tool end with it (`answer` None); the others end with final assistant text
(`answer` set), as the reference environment does. The same verifier `check_answer` serves both: the answer
must name the expected entity and no other entity of its type, and every hop's document must carry evidence.

Difficulty ladder: 1 one hop, 2 two hops, 3 three hops, 4 a comparison across two two-hop chains, 5 four hops.
This module holds the variant axes, the prompts and `SearchFamily` (plan, environment, tasks).
"""

from __future__ import annotations

import itertools
import random
import sqlite3
from pathlib import Path

from toolgym.envs.spec import ToolCall

from ..family import Candidate, Family, Key, asked, jinja, render_prompt
from .corpus import SYLLABLES, make_corpus
from .themes import THEME, THEMES

VARIANTS_PER_THEME = 10

# -- variant axes ----------------------------------------------------------------------------------------------
SEARCH_MODES = ["k", "page", "fixed"]
EVIDENCE = {
    "opened": "open each document on the path to the answer with {open}",
    "read": "open each document on the path to the answer with {open} (or search inside it with {find})",
    "searched": "search for each entity on the path to the answer by its full name with {search}",
}
"""Evidence rules: what each hop's document needs in the call log (the templates name the variant's tools)."""
STRUCTURES = [
    s
    for s in itertools.product(SEARCH_MODES, (False, True), (False, True), (False, True), tuple(EVIDENCE))
    if s[4] != "read" or s[1]  # "read" counts find_in_document, so only where that tool exists
]
"""(search mode, find tool, titles tool, submit tool, evidence rule): the tool set and rules of a variant."""
NAMES = {
    "search": ["search", "search_corpus", "search_archive", "full_text_search"],
    "open": ["open_document", "read_document", "get_document", "fetch_document"],
    "find": ["find_in_document", "grep_document", "find_text"],
    "titles": ["search_titles", "find_titles", "title_search"],
    "submit": ["submit_answer", "final_answer", "give_answer"],
    "doc_arg": ["doc_id", "document_id"],
    "query_arg": ["query", "terms"],
    "find_arg": ["text", "phrase"],
}
ID_PREFIXES = ["d", "doc", "rec", "a", "p", "n"]

# -- prompts ---------------------------------------------------------------------------------------------------
CHAIN_PROMPTS = [
    "What is the name of {{ target }}?",
    "Using the archive, identify {{ target }}. Reply with the name only.",
    "I'm reading about {{ topic }}. Can you tell me {{ target }}?",
    "For my notes on {{ topic }} I need {{ target }}. What is the name?",
    "Look it up in the documents: {{ target }}. Give just the name.",
]
PROMPTS = {
    "one_hop": CHAIN_PROMPTS + ["Quick question: name {{ target }}."],
    "two_hop": CHAIN_PROMPTS + ["Two lookups should do it: name {{ target }}."],
    "three_hop": CHAIN_PROMPTS + ["This takes three lookups in the archive: name {{ target }}."],
    "compare": [
        "Which {{ noun }} {{ compare }}: {{ a }} or {{ b }}?",
        "Between {{ a }} and {{ b }}, which {{ noun }} {{ compare }}? Answer with its name.",
        "I'm comparing {{ a }} with {{ b }}. Which one {{ compare }}?",
        "Of the two, {{ a }} and {{ b }}, tell me which {{ compare }}. Check the archive first.",
    ],
    "four_hop": CHAIN_PROMPTS + ["Trace the chain through four documents and name {{ target }}."],
}
HOPS = {"one_hop": 1, "two_hop": 2, "three_hop": 3, "four_hop": 4}
LEVEL = {"one_hop": 1, "two_hop": 2, "three_hop": 3, "compare": 4, "four_hop": 5}


def _rule(cfg: dict) -> str:
    n = cfg["names"]
    search = n["search"] + (f" or {n['titles']}" if cfg["titles"] else "")
    return EVIDENCE[cfg["evidence"]].format(open=n["open"], find=n["find"], search=search)


def _description(theme: dict, cfg: dict) -> str:
    n = cfg["names"]
    answer = (
        f"submit the answer, a short name, with {n['submit']}."
        if cfg["submit"]
        else "give the answer as a short name in your reply, without a tool call."
    )
    return (
        f"You answer questions about {theme['topic']} using a local archive of {cfg['n_docs']} documents about "
        "obscure entities; many names look alike, so check that a document is about exactly the entity you "
        f"need. Search with {n['search']}, read documents with {n['open']} and follow the facts hop by hop. "
        f"Rules: {_rule(cfg)}, and name only the answer, no other candidate. Finally, {answer}"
    )


def render_sources(key: Key, cfg: dict) -> dict[str, str]:
    """tools.py and verify.py of a variant: where its tool signatures and its rules come from."""
    theme, v = key
    n = cfg["names"]
    ctx = {
        **cfg,
        "topic": THEME[theme]["topic"],
        "variant": v,
        "n": n,
        "example_id": f"{cfg['id_prefix']}{42:0{cfg['id_width']}d}",
        "read_tools": [n["open"]] + ([n["find"]] if cfg["evidence"] == "read" else []),
        "search_tools": [n["search"]] + ([n["titles"]] if cfg["titles"] else []),
        "rule": _rule(cfg),
    }
    return {
        name: jinja(True).get_template(f"search/{name}.j2").render(**ctx)
        for name in ("tools.py", "verify.py")
    }


def _entities(env_dir: Path) -> dict[str, dict]:
    """The built corpus's entity graph (doc id -> title, ref, kind, year, main and trap links)."""
    db = sqlite3.connect(Path(env_dir) / "state" / "db.sqlite")
    db.row_factory = sqlite3.Row
    rows = {r["doc_id"]: dict(r) for r in db.execute("SELECT * FROM entities ORDER BY doc_id")}
    db.close()
    return rows


def _pools(ents: dict[str, dict], rng: random.Random) -> dict[str, list]:
    """Per kind, every question it can ask here, shuffled: chain starts deep enough for its hops, and pairs of
    first-level entities whose first links' years differ (for the comparisons)."""
    pools = {}
    for kind, hops in HOPS.items():
        pools[kind] = [e for e in ents.values() if e["kind"] <= 4 - hops]
        rng.shuffle(pools[kind])
    firsts = [e for e in ents.values() if e["kind"] == 0]
    pairs = [
        (a, b)
        for a, b in itertools.combinations(firsts, 2)
        if ents[a["main"]]["year"] != ents[b["main"]]["year"]
    ]
    rng.shuffle(pairs)
    pools["compare"] = pairs
    return {kind: pools[kind] for kind in PROMPTS}


def _lookup_calls(cfg: dict, e: dict, first: bool) -> list[ToolCall]:
    """Find a document by its entity's name and open it (the first search by title where that tool exists)."""
    n = cfg["names"]
    search = n["titles"] if first and cfg["titles"] else n["search"]
    return [
        ToolCall(name=search, arguments={n["query_arg"]: e["title"]}),
        ToolCall(name=n["open"], arguments={n["doc_arg"]: e["doc_id"]}),
    ]


def _question(
    theme: dict, ents: dict, kind: str, item, rng: random.Random
) -> tuple[dict, list[dict], dict, dict]:
    """(prompt slots, the hop entities in reading order, the answer entity, the guess entity)."""
    if kind == "compare":
        a, b = item
        direction = rng.choice(["earlier", "later"])
        ya, yb = ents[a["main"]]["year"], ents[b["main"]]["year"]
        win = a if (ya < yb) == (direction == "earlier") else b
        slots = {
            "a": a["ref"],
            "b": b["ref"],
            "noun": theme["types"][0]["noun"],
            "compare": render_prompt(theme["compare"], dir=direction),
        }
        return slots, [a, ents[a["main"]], b, ents[b["main"]]], win, b if win is a else a
    path, target = [item], item["ref"]
    for _ in range(HOPS[kind]):
        target = render_prompt(theme["rels"][path[-1]["kind"]]["phrase"], x=target)
        path.append(ents[path[-1]["main"]])
    return {"target": target, "topic": theme["topic"]}, path[:-1], path[-1], ents[path[-2]["trap"]]


class SearchFamily(Family):
    """Archives of long-tail entities over 16 themes, ten variants each."""

    NAME = "search"
    CATEGORY = "search"
    VERSION = "1"
    SCALES = {"tiny": (2, 10), "demo": (6, 20), "small": (16, 30), "full": (160, 100)}
    """scale -> (environments, candidate tasks per environment): 16 themes x 10 variants at full scale; tiny, demo
    and small take the first variant of the first themes, so even they span several themes."""

    def plan(self, scale: str) -> list[Key]:
        """(theme, variant) keys: variant-major, so every prefix (tiny, demo) spans as many themes as it can."""
        keys = [(t["name"], v) for v in range(VARIANTS_PER_THEME) for t in THEMES]
        return keys[: self.SCALES[scale][0]]

    def env_id(self, key: Key) -> str:
        theme, v = key
        return f"search_{theme}_v{v:03d}"

    def domain(self, key: Key) -> str:
        return key[0]

    def variant_config(self, key: Key, seed: int) -> dict:
        """Everything a variant fixes, from (seed, key) alone. A theme's variants draw distinct STRUCTURES, so two
        variants of one theme always differ in tool set or rules (and always in data)."""
        theme, v = key
        structures = random.Random(f"{seed}:search:{theme}:structures").sample(STRUCTURES, VARIANTS_PER_THEME)
        mode, find, titles, submit, evidence = structures[v % VARIANTS_PER_THEME]
        rng = random.Random(f"{seed}:search:{theme}:{v}")
        names = {role: rng.choice(options) for role, options in NAMES.items()}
        return {
            "mode": mode,
            "find": find,
            "titles": titles,
            "submit": submit,
            "evidence": evidence,
            "names": names,
            "page_size": rng.randint(3, 8),
            "top_n": rng.randint(5, 10),
            "default_k": rng.randint(3, 6),
            "snippet": rng.choice([0, 8, 12, 16, 24]),
            "n_docs": rng.randint(60, 300),
            "density": rng.choice([0.1, 0.25, 0.4, 0.55]),
            "syllables": rng.randrange(len(SYLLABLES)),
            "id_prefix": rng.choice(ID_PREFIXES),
            "id_width": rng.choice([3, 4, 5]),
        }

    def build_env(self, store: Path, key: Key, seed: int) -> Path:
        """Write `<store>/<env_id>/` for one variant, deterministically."""
        theme = THEME[key[0]]
        cfg = self.variant_config(key, seed)
        out = Path(store) / self.env_id(key)
        (out / "state").mkdir(parents=True, exist_ok=True)
        for name, text in render_sources(key, cfg).items():
            (out / name).write_text(text)
        make_corpus(
            out / "state" / "db.sqlite", theme, cfg, random.Random(f"{seed}:search:{key[0]}:{key[1]}:corpus")
        )
        return self.write_spec(out, key, seed, _description(theme, cfg))

    def make_tasks(self, env_dir: Path, key: Key, seed: int, n_tasks: int) -> list[Candidate]:
        """At most n_tasks candidates, the kinds taken in turn (a kind whose questions run out drops out)."""
        theme, cfg = THEME[key[0]], self.variant_config(key, seed)
        ents = _entities(Path(env_dir))
        pools = _pools(ents, random.Random(f"{seed}:search:{key[0]}:{key[1]}:pools"))
        out, k = [], 0
        while len(out) < n_tasks and any(pools.values()):
            kind = list(PROMPTS)[k % len(PROMPTS)]
            k += 1
            if not pools[kind]:
                continue
            rng = random.Random(f"{seed}:search:{key[0]}:{key[1]}:task:{k}")
            slots, hops, answer, guess = _question(theme, ents, kind, pools[kind].pop(), rng)
            t_index = rng.randrange(len(PROMPTS[kind]))
            text = render_prompt(PROMPTS[kind][t_index], **slots)
            prompt = [text[0].upper() + text[1:]]
            if asked(out, prompt):
                continue
            calls = [c for i, e in enumerate(hops) for c in _lookup_calls(cfg, e, i == 0)]
            if cfg["submit"]:
                calls.append(ToolCall(name=cfg["names"]["submit"], arguments={"answer": answer["title"]}))
            out.append(
                self.candidate(
                    kind,
                    t_index,
                    difficulty=LEVEL[kind],
                    prompt=prompt,
                    verifier="check_answer",
                    params={"expected": answer["title"], "hops": [e["doc_id"] for e in hops]},
                    solution=calls,
                    answer=None if cfg["submit"] else f"The answer is {answer['title']}.",
                    guess=guess["title"],
                )
            )
        return out


FAMILY = SearchFamily()
