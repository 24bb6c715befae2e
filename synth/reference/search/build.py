"""Build the search reference environment from a seed: a corpus of generated long-tail entities (companies,
people, towns, rivers) in SQLite FTS5 with look-alike distractors, and multi-hop questions whose reference
solutions search and open each document on the path.

    python -m toolgym.synth.reference.search.build OUT_STORE [--seed 0]
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from toolgym.envs.spec import ToolCall

from ...family import Candidate, asked, render_prompt
from ..common import main, state_db, write_env

ENV_ID = "search"
HERE = Path(__file__).resolve().parent
SYL = [
    "ka",
    "lo",
    "mir",
    "ven",
    "tas",
    "ro",
    "quil",
    "bar",
    "nes",
    "dor",
    "fel",
    "um",
    "zar",
    "ith",
    "pol",
    "gre",
]
INDUSTRIES = [
    "ceramics",
    "rope making",
    "glass lenses",
    "barometers",
    "sailcloth",
    "clockwork",
    "ink",
    "bells",
]
PROMPTS = {
    2: "In which town was the founder of the {{ company }} born?",
    3: "Which river flows through the birthplace of the person who founded the {{ company }}?",
}
"""The question of a 2- and a 3-hop chain."""
DESCRIPTION = (
    "You answer questions about obscure entities using a local document corpus. Search, open documents and "
    "follow the facts hop by hop; then give the answer as a short name, without a tool call."
)


def name(rng: random.Random, parts: int = 2) -> str:
    return "".join(rng.choice(SYL) for _ in range(parts)).capitalize()


def make_corpus(path: Path, rng: random.Random) -> dict:
    """Write the corpus; return the entity graph for the question writer."""
    rivers = sorted({name(rng, 2) + " River" for _ in range(10)})
    towns, people, companies = {}, {}, {}
    while len(towns) < 14:
        towns[name(rng, 3)] = rng.choice(rivers)
    town_names = sorted(towns)
    surnames = [name(rng, 2) for _ in range(6)]
    while len(people) < 18:
        person = f"{name(rng, 2)} {rng.choice(surnames)}"  # shared surnames make look-alike distractors
        people[person] = (rng.choice(town_names), rng.randint(1801, 1899))
    person_names = sorted(people)
    while len(companies) < 14:
        companies[f"{name(rng, 3)} {rng.choice(['Works', 'Company', 'Guild', 'Brothers'])}"] = (
            rng.choice(person_names),
            rng.choice(INDUSTRIES),
            rng.randint(1820, 1920),
            rng.choice(town_names),
        )
    docs = []
    for river in rivers:
        docs.append((river, f"The {river} is a small river. Its banks are known for reeds and old mills."))
    for town, river in towns.items():
        docs.append(
            (
                town,
                f"{town} is a market town. The {river} flows through {town}. "
                f"It holds a fair every {rng.choice(['spring', 'autumn', 'winter'])}.",
            )
        )
    for person, (town, year) in people.items():
        docs.append(
            (
                person,
                f"{person} was born in {town} in {year}. {person.split()[0]} trained as a "
                f"{rng.choice(['clerk', 'smith', 'surveyor', 'chemist'])} before starting a business.",
            )
        )
    for company, (founder, industry, year, town) in companies.items():
        docs.append(
            (
                company,
                f"The {company} was a maker of {industry}, founded in {year} by {founder}. "
                f"Its workshop stood in {town}.",
            )
        )
    rng.shuffle(docs)
    db = sqlite3.connect(path)
    db.execute("CREATE VIRTUAL TABLE docs USING fts5(doc_id UNINDEXED, title, body)")
    ids = {}
    for i, (title, body) in enumerate(docs):
        ids[title] = f"d{i:04d}"
        db.execute("INSERT INTO docs VALUES (?, ?, ?)", (ids[title], title, body))
    db.commit()
    db.close()
    return {"towns": towns, "people": people, "companies": companies, "ids": ids}


def make_task(
    g: dict, rng: random.Random, hops: int
) -> tuple[str, list[ToolCall], str, list[str], list[str]]:
    """(question, reference calls, answer, hop doc ids, distractors) for a 2- or 3-hop question."""
    company = rng.choice(sorted(g["companies"]))
    founder, industry, _, workshop = g["companies"][company]
    birthplace = g["people"][founder][0]
    calls = [
        ToolCall(name="search", arguments={"query": company}),
        ToolCall(name="open_document", arguments={"doc_id": g["ids"][company]}),
        ToolCall(name="search", arguments={"query": founder}),
        ToolCall(name="open_document", arguments={"doc_id": g["ids"][founder]}),
    ]
    hop_ids = [g["ids"][company], g["ids"][founder]]
    if hops == 2:
        answer, distractors = birthplace, [workshop] if workshop != birthplace else []
    else:
        river = g["towns"][birthplace]
        calls += [
            ToolCall(name="search", arguments={"query": birthplace}),
            ToolCall(name="open_document", arguments={"doc_id": g["ids"][birthplace]}),
        ]
        hop_ids.append(g["ids"][birthplace])
        answer = river
        other = g["towns"][workshop]
        distractors = [other] if other != river else []
    return render_prompt(PROMPTS[hops], company=company), calls, answer, hop_ids, distractors


def build(store: str | Path, seed: int = 0, n_tasks: int = 5) -> Path:
    """Write `<store>/search/` deterministically from `seed`."""
    out = Path(store) / ENV_ID
    db_path = state_db(out)
    graph = make_corpus(db_path, random.Random(seed))
    tasks = []
    for i in range(200):
        if len(tasks) == n_tasks:
            break
        rng = random.Random(seed * 7919 + i)
        question, calls, answer, hop_ids, distractors = make_task(graph, rng, 2 + len(tasks) % 2)
        if asked(tasks, [question]):
            continue
        tasks.append(
            Candidate(
                template=f"search/{len(hop_ids)}_hop",
                difficulty=2 * len(hop_ids) - 1,
                prompt=[question],
                verifier="check_answer",
                params={"expected": answer, "hops": hop_ids, "distractors": distractors},
                solution=calls,
                answer=f"The answer is {answer}.",
            )
        )
    return write_env(
        out, seed, tasks, category="search", domain="long_tail_entities", description=DESCRIPTION,
        source_dir=HERE, rendered=("verify.py",),
    )  # fmt: skip


if __name__ == "__main__":
    main(build, __doc__)
