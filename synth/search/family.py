"""The search family: the reference search environment (reference/search) generalized over themes and
variants. Each environment is an archive of generated long-tail entities (SQLite FTS5, state/db.sqlite) whose
documents chain five entity types (a company -> its founder -> the founder's birthplace -> its river -> where
the river rises), each document naming its next link plus a look-alike trap; questions follow the chain.

Themes are data (`themes.py`: five entity types (name patterns, founding-year verb) and four relations (the
sentence that states a link, a trap sentence naming another entity of the same type, and the noun phrase that
asks for the link); `corpus.py` writes the archive. One engine renders every theme; a variant fixes

- the tool set: search by count `k`, by page or a fixed top-N; snippet length (or none); optional
  `find_in_document` and `search_titles` tools; an optional submit tool; tool and argument names;
- the rules: which evidence each hop's document needs (read with any read tool, or also its entity searched
  for by full name) and whether the answer must be submitted with the submit tool;
- the data: corpus size (60..300 documents), look-alike density, the syllables of names, document id format.

Answers: variants with a submit tool end with it (`answer` None); the others end with final assistant text
(`answer` set). The same verifier `check_answer` serves both: the shared answer normalizer
(`toolgym_env.same_answer`) must find the expected entity and no other entity of its type in the answer, and
every hop's document must carry evidence.

Questions with several hops read as a sequence of short sentences ("Find the founder of X. Then find the town
where this person was born. What is its name?"), never as nested relative clauses. Difficulty ladder: 1 one hop,
2 two hops, 3 three hops, 4 a comparison across two two-document chains, 5 four hops or a comparison across two
three-document chains. Each candidate records its measured features (hop documents as constraints, look-alike and
trap documents as distractors); `harden` adds a hop to a question found too easy.
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

VARIANTS_PER_THEME = 26
FIRST_VARIANTS = 13
"""The variants of a theme drawn first (the corpus had 13 per theme): later ones are drawn from the structures
those left, so adding variants never changes an existing environment."""

# -- variant axes ----------------------------------------------------------------------------------------------
SEARCH_MODES = ["k", "page", "fixed"]
EVIDENCE = {
    "read": "read each document on the path to the answer with {reads}",
    "named": "read each document on the path to the answer with {reads}, or search for its entity by full "
    "name with {search}",
}
"""Evidence rules: what each hop's document needs in the call log (the templates name the variant's tools)."""
STRUCTURES = list(
    itertools.product(SEARCH_MODES, (False, True), (False, True), (False, True), tuple(EVIDENCE))
)
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
ONE_HOP = [
    "What is the name of {{ steps[0] }}?",
    "Using the archive, identify {{ steps[0] }}. Reply with the name only.",
    "I'm reading about {{ topic }}. Can you tell me {{ steps[0] }}?",
    "For my notes on {{ topic }} I need {{ steps[0] }}. What is the name?",
    "Look it up in the documents: {{ steps[0] }}. Give just the name.",
    "Quick question: name {{ steps[0] }}.",
]
THEN = ["Then find", "Next, find", "After this, find"]
CHAIN = [
    "Find {{ steps[0] }}.{% for s in steps[1:] %} {{ then[loop.index0 % 3] }} {{ s }}.{% endfor %}"
    " What is its name?",
    "I'm researching {{ topic }}. First, look up {{ steps[0] }}.{% for s in steps[1:] %} Then look up {{ s }}."
    "{% endfor %} Reply with the name of this {{ noun }}.",
    "{% for s in steps %}Step {{ loop.index }}: find {{ s }}. {% endfor %}Which {{ noun }} is it?",
    "Using the archive, follow a chain of {{ count }} lookups. Begin with {{ steps[0] }}.{% for s in steps[1:] %}"
    " From there, go to {{ s }}.{% endfor %} Give only the name of the {{ noun }} you end at.",
    "Start with {{ start }}. Look up {{ steps[0] }}.{% for s in steps[1:] %} {{ then[loop.index0 % 3] }} {{ s }}."
    "{% endfor %} Name this {{ noun }}, and nothing else.",
]
PROMPTS = {
    "one_hop": ONE_HOP,
    "two_hop": CHAIN,
    "three_hop": CHAIN,
    "compare": [
        "Which {{ noun }} {{ compare }}: {{ a }} or {{ b }}?",
        "Between {{ a }} and {{ b }}, which {{ noun }} {{ compare }}? Answer with its name.",
        "I'm comparing {{ a }} with {{ b }}. Which one {{ compare }}?",
        "Of the two, {{ a }} and {{ b }}, tell me which {{ compare }}. Check the archive first.",
    ],
    "four_hop": CHAIN,
    "compare_deep": [
        "Start with {{ a }} and with {{ b }}. Find {{ first }}. Then find {{ second }}. You end with one "
        "{{ noun }} for each. Which of the two {{ verb }} {{ dir }}? Give its name.",
        "Compare two chains in the archive. For {{ a }} and for {{ b }}, look up {{ first }}. Next, look up "
        "{{ second }}. Which {{ noun }} {{ verb }} {{ dir }}? Answer with its name.",
        "Take {{ a }} and {{ b }}. Find {{ first }}. After this, find {{ second }}. Of the two you reach, which "
        "{{ verb }} {{ dir }}? Reply with the name.",
    ],
}
HOPS = {"one_hop": 1, "two_hop": 2, "three_hop": 3, "four_hop": 4}
LEVEL = {"one_hop": 1, "two_hop": 2, "three_hop": 3, "compare": 4, "four_hop": 5, "compare_deep": 5}
COUNTS = {2: "two", 3: "three", 4: "four"}


def _rule(cfg: dict) -> str:
    n = cfg["names"]
    search = n["search"] + (f" or {n['titles']}" if cfg["titles"] else "")
    reads = n["open"] + (f" or {n['find']}" if cfg["find"] else "")
    return EVIDENCE[cfg["evidence"]].format(reads=reads, search=search)


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
        "read_tools": [n["open"]] + ([n["find"]] if cfg["find"] else []),
        "search_tools": [n["search"]] + ([n["titles"]] if cfg["titles"] else []),
        "rule": _rule(cfg),
    }
    return {
        name: jinja(True).get_template(f"search/{name}.j2").render(**ctx)
        for name in ("tools.py", "verify.py")
    }


def _entities(env_dir: Path) -> dict[str, dict]:
    """The built corpus's entity graph (doc id -> title, ref, kind, year, main and trap links, stem)."""
    db = sqlite3.connect(Path(env_dir) / "state" / "db.sqlite")
    db.row_factory = sqlite3.Row
    rows = {r["doc_id"]: dict(r) for r in db.execute("SELECT * FROM entities ORDER BY doc_id")}
    db.close()
    return rows


def _chain(ents: dict, start: dict, hops: int) -> list[dict]:
    """`start` and the `hops` entities its main links lead to, in order."""
    path = [start]
    for _ in range(hops):
        path.append(ents[path[-1]["main"]])
    return path


def _pools(ents: dict[str, dict], rng: random.Random) -> dict[str, list]:
    """Per kind, every question it can ask here, shuffled: chain starts deep enough for its hops, and pairs of
    first-level entities whose compared entities differ and whose years differ."""
    pools = {}
    for kind, hops in HOPS.items():
        pools[kind] = [e for e in ents.values() if e["kind"] <= 4 - hops]
        rng.shuffle(pools[kind])
    firsts = [e for e in ents.values() if e["kind"] == 0]
    for kind, depth in (("compare", 1), ("compare_deep", 2)):
        pairs = []
        for a, b in itertools.combinations(firsts, 2):
            ea, eb = _chain(ents, a, depth)[-1], _chain(ents, b, depth)[-1]
            if ea["doc_id"] != eb["doc_id"] and ea["year"] != eb["year"]:
                pairs.append((a, b))
        rng.shuffle(pairs)
        pools[kind] = pairs
    return {kind: pools[kind] for kind in PROMPTS}


def _lookup_calls(cfg: dict, e: dict, first: bool) -> list[ToolCall]:
    """Find a document by its entity's name and open it (the first search by title where that tool exists)."""
    n = cfg["names"]
    search = n["titles"] if first and cfg["titles"] else n["search"]
    return [
        ToolCall(name=search, arguments={n["query_arg"]: e["title"]}),
        ToolCall(name=n["open"], arguments={n["doc_arg"]: e["doc_id"]}),
    ]


def _steps(theme: dict, path: list[dict], each: bool = False) -> list[str]:
    """The noun phrase of every link of `path` in order: the first names its start, each later one refers back
    ("this town"; "each person" when two chains are followed at once)."""
    out = []
    for i, e in enumerate(path[:-1]):
        if i == 0:
            x = "each of them" if each else e["ref"]
        else:
            x = ("each " if each else "this ") + theme["types"][e["kind"]]["noun"]
        out.append(render_prompt(theme["rels"][e["kind"]]["phrase"], x=x))
    return out


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
    if kind == "compare_deep":
        a, b = item
        direction = rng.choice(["earlier", "later"])
        ca, cb = _chain(ents, a, 2), _chain(ents, b, 2)
        win, lose = (
            (ca[-1], cb[-1])
            if (ca[-1]["year"] < cb[-1]["year"]) == (direction == "earlier")
            else (cb[-1], ca[-1])
        )
        t = theme["types"][2]
        first, second = _steps(theme, ca, each=True)
        slots = {"a": a["ref"], "b": b["ref"], "noun": t["noun"], "verb": t["year_verb"], "dir": direction}
        return {**slots, "first": first, "second": second}, ca + cb, win, lose
    path = _chain(ents, item, HOPS[kind])
    slots = {
        "steps": _steps(theme, path),
        "start": item["ref"],
        "topic": theme["topic"],
        "noun": theme["types"][path[-1]["kind"]]["noun"],
        "then": THEN,
        "count": COUNTS.get(HOPS[kind], ""),
    }
    return slots, path[:-1], path[-1], ents[path[-2]["trap"]]


def _is_person(theme: dict, kind: int) -> bool:
    return "{f}" in theme["types"][kind]["patterns"][0]


def _decoys(theme: dict, ents: dict, path: list[dict]) -> int:
    """Documents an agent may take for one on the path: look-alikes of a path entity (same stem, or for people
    the same surname) and every path entity's trap link."""
    on_path = {e["doc_id"] for e in path}
    out = {ents[e["trap"]]["doc_id"] for e in path if e.get("trap")}
    for e in path:
        for o in ents.values():
            if o["kind"] != e["kind"] or o["doc_id"] == e["doc_id"]:
                continue
            if (
                (o["title"].split()[-1] == e["title"].split()[-1])
                if _is_person(theme, e["kind"])
                else o["stem"] == e["stem"]
            ):
                out.add(o["doc_id"])
    return len(out - on_path)


class SearchFamily(Family):
    """Archives of long-tail entities over 16 themes, 26 variants each."""

    NAME = "search"
    CATEGORY = "search"
    VERSION = "2"
    SCALES = {"tiny": (2, 12), "demo": (6, 24), "small": (16, 36), "full": (416, 150)}
    """scale -> (environments, candidate tasks per environment): 16 themes x 26 variants at full scale (about
    62,400 candidates; admission keeps about 94% of them: search leads the mix, as in DeepSeek-V3.2's); tiny,
    demo and small take the first variant of the first themes, so even they span several themes."""

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
        structures = random.Random(f"{seed}:search:{theme}:structures").sample(STRUCTURES, FIRST_VARIANTS)
        rest = [x for x in STRUCTURES if x not in structures]
        structures += random.Random(f"{seed}:search:{theme}:structures:more").sample(
            rest, VARIANTS_PER_THEME - FIRST_VARIANTS
        )
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

    def _candidate(self, key: Key, seed: int, ents: dict, kind: str, item, k: int) -> Candidate:
        """The candidate of one question (`item`: a chain start or a pair of starts); `k` seeds its wording."""
        theme, cfg = THEME[key[0]], self.variant_config(key, seed)
        rng = random.Random(f"{seed}:search:{key[0]}:{key[1]}:task:{kind}:{k}")
        slots, hops, answer, guess = _question(theme, ents, kind, item, rng)
        t_index = rng.randrange(len(PROMPTS[kind]))
        text = render_prompt(PROMPTS[kind][t_index], **slots)
        calls = [c for i, e in enumerate(hops) for c in _lookup_calls(cfg, e, i == 0)]
        if cfg["submit"]:
            calls.append(ToolCall(name=cfg["names"]["submit"], arguments={"answer": answer["title"]}))
        start = [x["doc_id"] for x in item] if isinstance(item, tuple) else item["doc_id"]
        return self.candidate(
            kind,
            t_index,
            difficulty=LEVEL[kind],
            prompt=[text[0].upper() + text[1:]],
            verifier="check_answer",
            params={"expected": answer["title"], "hops": [e["doc_id"] for e in hops]},
            solution=calls,
            answer=None if cfg["submit"] else f"The answer is {answer['title']}.",
            guess=guess["title"],
            extra={
                "features": {
                    "constraints": len(hops) + kind.startswith("compare"),  # a comparison is one more
                    "distractors": _decoys(theme, ents, [*hops, answer]),
                    "user_facts": 0,
                },
                "question": {"kind": kind, "start": start, "k": k},
            },
        )

    def make_tasks(self, env_dir: Path, key: Key, seed: int, n_tasks: int) -> list[Candidate]:
        """At most n_tasks candidates, the kinds taken in turn (a kind whose questions run out drops out)."""
        ents = _entities(Path(env_dir))
        pools = _pools(ents, random.Random(f"{seed}:search:{key[0]}:{key[1]}:pools"))
        out, k = [], 0
        while len(out) < n_tasks and any(pools.values()):
            kind = list(PROMPTS)[k % len(PROMPTS)]
            k += 1
            if not pools[kind]:
                continue
            c = self._candidate(key, seed, ents, kind, pools[kind].pop(), k)
            if not asked(out, c.prompt):
                out.append(c)
        return out

    def harden(
        self, env_dir: Path, key: Key, seed: int, candidate: Candidate, reason: str
    ) -> Candidate | None:
        """A harder variant of a question found too easy: a chain gets one more hop (it starts one link earlier
        where some entity links to its start, else it goes one link further), a comparison follows both chains
        one document further; None when the archive has no such question."""
        q = candidate.extra.get("question")
        if not q:
            return None
        ents = _entities(Path(env_dir))
        kind, start, k = q["kind"], q["start"], q["k"]
        if kind == "compare":
            a, b = ents[start[0]], ents[start[1]]
            ea, eb = _chain(ents, a, 2)[-1], _chain(ents, b, 2)[-1]
            if ea["doc_id"] == eb["doc_id"] or ea["year"] == eb["year"]:
                return None
            return self._candidate(key, seed, ents, "compare_deep", (a, b), k)
        if kind not in HOPS or HOPS[kind] == 4:
            return None
        longer = {1: "two_hop", 2: "three_hop", 3: "four_hop"}[HOPS[kind]]
        before = sorted(d for d, e in ents.items() if e.get("main") == start)
        if before:  # one link earlier: the old start becomes the first hop's answer
            return self._candidate(key, seed, ents, longer, ents[before[0]], k)
        if ents[start]["kind"] + HOPS[longer] <= 4:  # one link further from the same start
            return self._candidate(key, seed, ents, longer, ents[start], k)
        return None


FAMILY = SearchFamily()
