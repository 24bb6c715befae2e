"""The archive of a search-family environment: entity names from syllable sets (look-alikes share a stem or a
surname, and no name's words ever stand inside another's), five levels of entities linked level to level with a
trap beside each link, and the documents that state them, written to state/db.sqlite (SQLite FTS5)."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from toolgym.envs.inside.toolgym_env import normalize_text

from ..reference.search.build import SYL

FILLER = [
    "Little else is recorded about {a}.",
    "Records of {a} survive in a regional archive.",
    "{a} appears in several local histories.",
    "A short account of {a} was printed in a gazetteer.",
    "Most of what is known about {a} comes from letters and ledgers.",
    "{a} is often confused with {b}.",
]
SYLLABLES = [
    SYL,
    "an bel cor dra eth fin gar hal ist jor kel lun mor nar ost pel".split(),
    "sa ti vo ra ne mu ki lo pa zu re ho ma di ya ke".split(),
    "brek ost val dun hel gri skar tor vin ard bru kol sten ulf eg ran".split(),
    "ami ber cil dol esk fau gil hon ira jul lav mel nov ort pia ser".split(),
    "tak ome ruk sel vid ana zor kem lif wen bra dos gim hur ity pov".split(),
]
"""Syllable sets of the generated names (the first is the reference environment's): one per variant."""


def normalize(text: str) -> str:
    """A name as every search verifier reads it (`toolgym_env.normalize_text`, the shared answer normalizer):
    case, punctuation and articles do not count."""
    return normalize_text(text)


def _words(text: str) -> list[str]:
    """A name's words as the verifier sees them."""
    return normalize(text).split()


class _Namer:
    """Entity names from a syllable set. Look-alikes share a stem (or a surname); no name's words ever appear
    inside another name's, so naming one entity can never be read as naming another."""

    def __init__(self, rng: random.Random, syllables: list[str], density: float, n_surnames: int) -> None:
        self.rng, self.syl, self.density = rng, syllables, density
        self.used: set[str] = set()
        self.names: set[tuple] = set()  # every name's words
        self.parts: set[tuple] = set()  # every run of consecutive words inside a name
        self.surnames = [self.word(2) for _ in range(n_surnames)]

    def word(self, parts: int) -> str:
        """A fresh word; one syllable longer when the short ones run out (16 syllables make 256 pairs)."""
        for attempt in range(400):
            w = "".join(self.rng.choice(self.syl) for _ in range(parts + attempt // 40)).capitalize()
            if w.lower() not in self.used:
                self.used.add(w.lower())
                return w
        raise RuntimeError("the syllable set cannot make enough distinct words")

    @staticmethod
    def _runs(words: tuple) -> set[tuple]:
        return {words[i:j] for i in range(len(words)) for j in range(i + 1, len(words) + 1)}

    def fits(self, words: tuple) -> bool:
        return words not in self.parts and not self._runs(words) & self.names

    def name(self, patterns: list[str], stems: list[str]) -> tuple[str, str]:
        """(name, stem): with probability `density` an existing stem of this type, i.e. a look-alike."""
        for _ in range(200):
            pattern = self.rng.choice(patterns)
            look_alike = stems and self.rng.random() < self.density
            stem = self.rng.choice(stems) if look_alike else self.word(self.rng.choice([2, 2, 3]))
            text = pattern.format(
                s=stem, g=self.word(2) if "{g}" in pattern else "", f=self.rng.choice(self.surnames)
            )
            words = tuple(_words(text))
            if self.fits(words):
                self.names.add(words)
                self.parts |= self._runs(words)
                return text, stem
        raise RuntimeError("the syllable set cannot make enough distinct names")


def _make_entities(theme: dict, cfg: dict, rng: random.Random) -> list[list[dict]]:
    """Five levels of entities; every entity of levels 0..3 links to one of the next level (`main`) and names
    another one as a trap (a look-alike of the main link when there is one)."""
    shares = [0.34, 0.24, 0.17, 0.13, 0.12]
    counts = [max(6, round(cfg["n_docs"] * s)) for s in shares]
    counts[0] = cfg["n_docs"] - sum(counts[1:])
    persons = sum(c for c, t in zip(counts, theme["types"], strict=True) if "{f}" in t["patterns"][0])
    n_surnames = max(3, round(persons * (1 - cfg["density"]) / 3))  # denser variants share more surnames
    namer = _Namer(rng, SYLLABLES[cfg["syllables"]], cfg["density"], n_surnames)
    levels = []
    for kind, (count, t) in enumerate(zip(counts, theme["types"], strict=True)):
        stems, level = [], []
        for _ in range(count):
            text, stem = namer.name(t["patterns"], stems)
            stems.append(stem)
            title = text[4:] if text.startswith("the ") else text
            level.append(
                {"kind": kind, "title": title, "ref": text, "stem": stem, "year": rng.randint(*t["years"])}
            )
        levels.append(level)
    for kind in range(4):
        nxt = levels[kind + 1]
        for e in levels[kind]:
            e["main"] = rng.choice(nxt)
            alikes = [o for o in nxt if o["stem"] == e["main"]["stem"] and o is not e["main"]]
            others = [o for o in nxt if o is not e["main"]]
            e["trap"] = rng.choice(alikes if alikes and rng.random() < 0.7 else others)
    return levels


def _sentence(template: str, a: dict, b: dict | None = None) -> str:
    text = template.format(a=a["ref"], b=b["ref"] if b else "")
    return text[0].upper() + text[1:]


def _body(theme: dict, e: dict, level: list[dict], rng: random.Random) -> str:
    """A document: its year, its link and trap (below the last level), a filler or a look-alike's name."""
    first = _sentence("{a} " + theme["types"][e["kind"]]["year_verb"] + f" in {e['year']}.", e)
    rest = []
    if e["kind"] < 4:
        rel = theme["rels"][e["kind"]]
        rest += [_sentence(rel["main"], e, e["main"]), _sentence(rel["trap"], e, e["trap"])]
    alikes = [o for o in level if o["stem"] == e["stem"] and o is not e]
    filler = rng.choice(FILLER if alikes else FILLER[:-1])
    rest.append(_sentence(filler, e, rng.choice(alikes) if alikes else None))
    rng.shuffle(rest)
    return " ".join([first, *rest])


def make_corpus(path: Path, theme: dict, cfg: dict, rng: random.Random) -> None:
    """Write state/db.sqlite: `docs` (FTS5) is what the tools search; `entities` (each document's entity type,
    year, links and name stem: look-alikes share it) is what the verifier and the question writer read, and no
    tool exposes it."""
    levels = _make_entities(theme, cfg, rng)
    entities = [e for level in levels for e in level]
    numbers = rng.sample(range(1, 10 ** cfg["id_width"]), len(entities))
    for e, n in zip(entities, numbers, strict=True):
        e["doc_id"] = f"{cfg['id_prefix']}{n:0{cfg['id_width']}d}"
    rows = [
        (e["doc_id"], e["title"], _body(theme, e, levels[e["kind"]], rng), e["ref"], e["kind"], e["year"],
         e.get("main", {}).get("doc_id"), e.get("trap", {}).get("doc_id"), e["stem"])
        for e in entities
    ]  # fmt: skip
    rng.shuffle(rows)
    if path.exists():
        path.unlink()
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE VIRTUAL TABLE docs USING fts5(doc_id UNINDEXED, title, body);"
        "CREATE TABLE entities (doc_id TEXT PRIMARY KEY, title TEXT UNIQUE, ref TEXT, kind INTEGER,"
        " year INTEGER, main TEXT, trap TEXT, stem TEXT);"
    )
    db.executemany("INSERT INTO docs VALUES (?, ?, ?)", [r[:3] for r in rows])
    db.executemany(
        "INSERT INTO entities VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [(r[0], r[1], *r[3:]) for r in rows]
    )
    db.commit()
    db.close()
