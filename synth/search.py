"""The search family: the reference search environment (envs/reference/search) generalized over themes and
variants. Each environment is an archive of generated long-tail entities (SQLite FTS5, state/db.sqlite) whose
documents chain five entity types (a company -> its founder -> the founder's birthplace -> its river -> where
the river rises), each document naming its next link plus a look-alike trap; questions follow the chain.

Themes are data (`THEMES`): five entity types (name patterns, founding-year verb) and four relations (the
sentence that states a link, a trap sentence naming another entity of the same type, and the noun phrase that
asks for the link). One engine renders every theme; a variant fixes

- the tool set: search by count `k`, by page or a fixed top-N; snippet length (or none); optional
  `find_in_document` and `search_titles` tools; an optional submit tool; tool and argument names;
- the rules: which evidence each hop's document needs (opened, opened or searched inside, or its entity
  searched for by name) and whether the answer must be submitted with the submit tool;
- the data: corpus size (60..300 documents), look-alike density, the syllables of names, document id format.

Answers: variants with a submit tool end with it (`answer` None); the others end with final assistant text
(`answer` set), as the reference environment does. The same verifier `check_answer` serves both: the answer
must name the expected entity and no other entity of its type, and every hop's document must carry evidence.

Difficulty ladder: 1 one hop, 2 two hops, 3 three hops, 4 a comparison across two two-hop chains, 5 four hops.
"""

from __future__ import annotations

import itertools
import random
import re
import sqlite3
from functools import cache
from pathlib import Path

from toolgym.envs.schema import load_tools_module, tools_from_module
from toolgym.envs.spec import EnvSpec, Provenance, ToolCall, write_env_spec

from .family import jinja, prompt_template
from .reference.search import build as reference

NAME = "search"
CATEGORY = "search"
VERSION = "1"
VARIANTS_PER_THEME = 10
SCALES = {"tiny": (2, 10), "demo": (6, 20), "small": (16, 30), "full": (160, 100)}
"""scale -> (environments, candidate tasks per environment): 16 themes x 10 variants at full scale; tiny, demo
and small take the first variant of the first themes, so even they span several themes."""


# -- themes as data ------------------------------------------------------------------------------------------
def _type(noun: str, patterns: str, year_verb: str, years: tuple[int, int]) -> dict:
    """An entity type. Patterns ("|"-separated) use {s} a stem that look-alikes share, {g} a fresh given name,
    {f} a surname from a small shared pool; a leading "the " is the article the name takes in a sentence."""
    return {"noun": noun, "patterns": patterns.split("|"), "year_verb": year_verb, "years": years}


def _rel(main: str, trap: str, phrase: str) -> dict:
    """A link from one type to the next: the sentence that states it ({a} -> {b}), a trap sentence naming
    another entity of b's type, and the noun phrase that asks for b given a description {x} of a."""
    return {"main": main, "trap": trap, "phrase": phrase}


def _theme(name: str, topic: str, types: list[dict], rels: list[dict], compare: str) -> dict:
    """`compare` asks about the first link's year, with {dir} = earlier | later (the comparison questions)."""
    assert len(types) == 5 and len(rels) == 4, name
    return {"name": name, "topic": topic, "types": types, "rels": rels, "compare": compare}


PERSON = "{g} {f}"
# One line per entity type and per link: the table reads as a table.
# fmt: off
THEMES: list[dict] = [
    _theme("industrial_history", "industrial history", [
        _type("company", "the {s} Works|the {s} Company|the {s} Brothers|the {s} Foundry", "was founded", (1820, 1920)),
        _type("person", PERSON, "was born", (1760, 1890)),
        _type("town", "{s}|{s} Market|Upper {s}", "was chartered", (1200, 1700)),
        _type("river", "the {s} River|the River {s}", "was first mapped", (1550, 1800)),
        _type("upland", "the {s} Hills|the {s} Fells|the {s} Moors", "was first surveyed", (1600, 1850)),
    ], [
        _rel("{a} was founded by {b}.", "{a} was later managed by {b}.", "the founder of {x}"),
        _rel("{a} was born in {b}.", "{a} later moved to {b}.", "the town where {x} was born"),
        _rel("{b} flows through {a}.", "{a} lies a few miles from {b}.", "the river that flows through {x}"),
        _rel("{a} rises in {b}.", "{a} is fed by streams from {b}.", "the upland where {x} rises"),
    ], "has the founder who was born {dir}"),
    _theme("river_towns", "river towns and their fairs", [
        _type("fair", "the {s} Fair|the {s} Horse Fair|the {s} Wool Fair", "was first held", (1300, 1800)),
        _type("town", "{s}|{s} Quay|{s} Bridge", "was chartered", (1100, 1600)),
        _type("river", "the {s} River|the River {s}|the {s} Water", "was first mapped", (1500, 1800)),
        _type("port", "Port {s}|{s} Haven|{s} Mouth", "was founded", (900, 1500)),
        _type("province", "the Province of {s}|the {s} March|{s} Shire", "was formed", (800, 1400)),
    ], [
        _rel("{a} is held every year in {b}.", "Traders at {a} mostly come from {b}.", "the town that hosts {x}"),
        _rel("{a} stands on the banks of {b}.", "{a} draws water from a canal linked to {b}.", "the river on which {x} stands"),
        _rel("{a} reaches the sea at {b}.", "Barges on {a} once sailed as far as {b}.", "the port where {x} reaches the sea"),
        _rel("{a} is the chief harbour of {b}.", "{a} trades mostly with {b}.", "the province whose chief harbour is {x}"),
    ], "is held in the town that was chartered {dir}"),
    _theme("botanical_expeditions", "botanical expeditions", [
        _type("plant", "{s}ia {g}ensis|{s}ia {g}ana|{s}um {g}ii", "was described", (1750, 1900)),
        _type("expedition", "the {s} Expedition|the {s} Survey|the {s} Voyage", "set out", (1740, 1890)),
        _type("botanist", PERSON, "was born", (1760, 1890)),
        _type("garden", "the {s} Botanic Garden|the {s} Physic Garden|the {s} Arboretum", "was laid out", (1600, 1850)),
        _type("city", "{s}|{s} City|New {s}", "was founded", (900, 1600)),
    ], [
        _rel("{a} was first collected by {b}.", "{a} was also reported by {b}.", "the expedition that first collected {x}"),
        _rel("{a} was led by {b}.", "{a} carried letters of introduction from {b}.", "the leader of {x}"),
        _rel("{a} was curator of {b}.", "{a} corresponded with the keepers of {b}.", "the garden of which {x} was curator"),
        _rel("{a} lies in {b}.", "{a} received seeds from {b}.", "the city in which {x} lies"),
    ], "was first collected by the expedition that set out {dir}"),
    _theme("chess_clubs", "chess clubs and tournaments", [
        _type("tournament", "the {s} Open|the {s} Invitational|the {s} Congress", "was first held", (1850, 1960)),
        _type("player", PERSON, "was born", (1820, 1940)),
        _type("club", "the {s} Chess Club|the {s} Chess Circle|the {s} Knights", "was founded", (1820, 1930)),
        _type("venue", "Cafe {s}|the {s} Hall|the {s} Rooms", "opened", (1780, 1900)),
        _type("town", "{s}|{s} Green|West {s}", "was chartered", (1100, 1700)),
    ], [
        _rel("{a} was won by {b}.", "{b} finished second at {a}.", "the winner of {x}"),
        _rel("{a} played for {b}.", "{a} once gave a simultaneous exhibition at {b}.", "the club {x} played for"),
        _rel("{a} meets at {b}.", "{a} held its centenary dinner at {b}.", "the venue where {x} meets"),
        _rel("{a} stands in {b}.", "{a} was designed by an architect from {b}.", "the town where {x} stands"),
    ], "was won by the player who was born {dir}"),
    _theme("shipwrecks", "shipwrecks and their crews", [
        _type("ship", "the SS {s}|the {s} Star|the {s} Maid|the {s} Queen", "was launched", (1820, 1930)),
        _type("captain", PERSON, "was born", (1780, 1900)),
        _type("port", "{s}|Port {s}|{s} Harbour", "was founded", (900, 1600)),
        _type("bay", "{s} Bay|the {s} Sound|the Bight of {s}", "was charted", (1500, 1800)),
        _type("headland", "Cape {s}|{s} Head|{s} Point", "was named", (1450, 1750)),
    ], [
        _rel("{a} sank under the command of {b}.", "{a} was earlier commanded by {b}.", "the captain under whom {x} sank"),
        _rel("{a} was born in {b}.", "{a} retired to {b}.", "the port where {x} was born"),
        _rel("{a} lies on {b}.", "{a} faces {b} across the strait.", "the bay on which {x} lies"),
        _rel("{a} is sheltered by {b}.", "{a} is often compared with {b}.", "the headland that shelters {x}"),
    ], "sank under the captain who was born {dir}"),
    _theme("observatories", "observatories and astronomers", [
        _type("observatory", "the {s} Observatory|the {s} Station|the {s} Dome", "opened", (1700, 1950)),
        _type("astronomer", PERSON, "was born", (1700, 1920)),
        _type("college", "the University of {s}|{s} College|the {s} Institute", "was founded", (1300, 1880)),
        _type("city", "{s}|{s} City|Old {s}", "was incorporated", (1000, 1700)),
        _type("province", "the Province of {s}|{s} Land|the {s} Region", "was created", (800, 1500)),
    ], [
        _rel("The first director of {a} was {b}.", "{b} taught a summer course at {a}.", "the first director of {x}"),
        _rel("{a} studied at {b}.", "{a} lectured at {b}.", "the college where {x} studied"),
        _rel("{a} is located in {b}.", "{a} has a field station near {b}.", "the city where {x} is located"),
        _rel("{a} is the capital of {b}.", "{a} sends its members of parliament to {b}.", "the province whose capital is {x}"),
    ], "had the first director who was born {dir}"),
    _theme("monasteries", "monasteries and their founders", [
        _type("monastery", "the {s} Abbey|the {s} Priory|the Monastery of {s}", "was consecrated", (600, 1300)),
        _type("abbot", PERSON, "was born", (560, 1260)),
        _type("cathedral", "the {s} Minster|the Cathedral of {s}|the {s} Basilica", "was consecrated", (500, 1200)),
        _type("city", "{s}|{s} Town|High {s}", "was first recorded", (300, 1000)),
        _type("realm", "the Kingdom of {s}|the {s} March|the Duchy of {s}", "was established", (300, 900)),
    ], [
        _rel("{a} was founded by {b}.", "{a} was rebuilt under {b}.", "the founder of {x}"),
        _rel("{a} was trained at {b}.", "{a} made a pilgrimage to {b}.", "the cathedral where {x} was trained"),
        _rel("{a} stands in {b}.", "Pilgrims to {a} often stopped in {b}.", "the city where {x} stands"),
        _rel("{a} belonged to {b}.", "{a} paid tribute to {b}.", "the realm to which {x} belonged"),
    ], "was founded by the abbot who was born {dir}"),
    _theme("rail_lines", "railway lines and stations", [
        _type("line", "the {s} Railway|the {s} Line|the {s} Branch", "opened", (1830, 1930)),
        _type("station", "{s} Station|{s} Junction|{s} Halt", "opened", (1830, 1930)),
        _type("architect", PERSON, "was born", (1780, 1890)),
        _type("town", "{s}|{s} Cross|Lower {s}", "was chartered", (1100, 1700)),
        _type("county", "{s} Shire|the County of {s}|the {s} Riding", "was formed", (800, 1500)),
    ], [
        _rel("{a} ends at {b}.", "{a} once ran excursions to {b}.", "the terminus of {x}"),
        _rel("{a} was designed by {b}.", "{a} was enlarged by {b}.", "the architect of {x}"),
        _rel("{a} was born in {b}.", "{a} worked for years in {b}.", "the town where {x} was born"),
        _rel("{a} is the county town of {b}.", "{a} borders {b}.", "the county whose county town is {x}"),
    ], "ends at the station that opened {dir}"),
    _theme("guilds", "craft guilds", [
        _type("guild", "the Guild of {s}|the {s} Guild|the {s} Fraternity", "received its charter", (1200, 1600)),
        _type("master", PERSON, "was born", (1150, 1580)),
        _type("street", "{s} Lane|{s} Street|{s} Row", "was paved", (1300, 1800)),
        _type("quarter", "the {s} Quarter|the {s} Ward|{s} Side", "was walled", (1100, 1500)),
        _type("city", "{s}|{s} Burgh|Great {s}", "was founded", (700, 1200)),
    ], [
        _rel("The first master of {a} was {b}.", "{b} was expelled from {a}.", "the first master of {x}"),
        _rel("{a} kept a workshop on {b}.", "{a} lodged on {b}.", "the street where {x} kept a workshop"),
        _rel("{a} runs through {b}.", "{a} leads toward {b}.", "the quarter that {x} runs through"),
        _rel("{a} is a district of {b}.", "{a} supplied cloth to {b}.", "the city of which {x} is a district"),
    ], "had the first master who was born {dir}"),
    _theme("record_labels", "bands and record labels", [
        _type("album", "{s} Sessions|{s} Nights|the {s} Tapes", "was released", (1955, 2015)),
        _type("band", "the {s} Collective|the {s} Quartet|the {s} Band", "formed", (1950, 2010)),
        _type("label", "{s} Records|{s} Sound|{s} Recordings", "was founded", (1940, 2000)),
        _type("founder", PERSON, "was born", (1910, 1980)),
        _type("city", "{s}|{s} City|South {s}", "was incorporated", (1700, 1900)),
    ], [
        _rel("{a} was recorded by {b}.", "{a} featured guest vocals from {b}.", "the band that recorded {x}"),
        _rel("{a} signed to {b}.", "{a} was courted by {b}.", "the label to which {x} signed"),
        _rel("{a} was founded by {b}.", "{a} was briefly run by {b}.", "the founder of {x}"),
        _rel("{a} grew up in {b}.", "{a} now lives in {b}.", "the city where {x} grew up"),
    ], "was recorded by the band that formed {dir}"),
    _theme("inventors_patents", "inventors and their patents", [
        _type("device", "the {s} Engine|the {s} Loom|the {s} Valve|the {s} Lamp", "was patented", (1780, 1920)),
        _type("inventor", PERSON, "was born", (1740, 1890)),
        _type("firm", "{s} and Sons|{s} Manufacturing|the {s} Company", "was established", (1780, 1920)),
        _type("city", "{s}|{s} Mills|North {s}", "was incorporated", (1100, 1800)),
        _type("region", "the {s} Valley Region|{s} Land|the {s} Basin", "was first mapped", (1400, 1800)),
    ], [
        _rel("{a} was invented by {b}.", "{a} was improved by {b}.", "the inventor of {x}"),
        _rel("{a} sold the patent to {b}.", "{a} briefly worked for {b}.", "the firm that bought the patent from {x}"),
        _rel("{a} had its factory in {b}.", "{a} had a sales office in {b}.", "the city where {x} had its factory"),
        _rel("{a} is the largest town in {b}.", "{a} ships its goods through {b}.", "the region whose largest town is {x}"),
    ], "was invented by the person who was born {dir}"),
    _theme("vineyards", "vineyards and wines", [
        _type("wine", "{s} Reserve|{s} Cuvee|{s} Late Harvest", "was first bottled", (1800, 1990)),
        _type("estate", "Chateau {s}|the {s} Estate|Domaine {s}", "was established", (1600, 1900)),
        _type("winemaker", PERSON, "was born", (1580, 1880)),
        _type("village", "{s}|{s} le Bas|Saint {s}", "was first recorded", (900, 1400)),
        _type("valley", "the {s} Valley|the Vale of {s}|the {s} Coombe", "was first surveyed", (1500, 1800)),
    ], [
        _rel("{a} is made at {b}.", "{a} is blended with grapes bought from {b}.", "the estate that makes {x}"),
        _rel("{a} was planted by {b}.", "{a} was leased for a decade to {b}.", "the person who planted {x}"),
        _rel("{a} was born in {b}.", "{a} is buried in {b}.", "the village where {x} was born"),
        _rel("{a} lies in {b}.", "{a} overlooks {b}.", "the valley in which {x} lies"),
    ], "is made at the estate that was established {dir}"),
    _theme("lighthouses", "lighthouses and keepers", [
        _type("lighthouse", "the {s} Light|the {s} Lighthouse|the {s} Beacon", "was first lit", (1700, 1920)),
        _type("keeper", PERSON, "was born", (1660, 1890)),
        _type("island", "{s} Island|the Isle of {s}|{s} Holm", "was settled", (700, 1600)),
        _type("island group", "the {s} Isles|the {s} Islands|the {s} Skerries", "was charted", (1400, 1800)),
        _type("sea", "the {s} Sea|the Sea of {s}|the {s} Deep", "was named", (1300, 1700)),
    ], [
        _rel("The first keeper of {a} was {b}.", "{b} relieved the keeper of {a} one winter.", "the first keeper of {x}"),
        _rel("{a} was born on {b}.", "{a} kept a boat on {b}.", "the island where {x} was born"),
        _rel("{a} is part of {b}.", "{a} can be seen from {b}.", "the island group that includes {x}"),
        _rel("{a} lie in {b}.", "{a} shelter fishing boats from {b}.", "the sea in which {x} lie"),
    ], "had the first keeper who was born {dir}"),
    _theme("football_clubs", "football clubs and grounds", [
        _type("club", "{s} United|{s} Rovers|{s} Athletic|{s} Wanderers", "was formed", (1860, 1930)),
        _type("ground", "{s} Park|{s} Road|the {s} Stadium", "opened", (1860, 1960)),
        _type("builder", PERSON, "was born", (1800, 1910)),
        _type("town", "{s}|{s} Vale|East {s}", "was chartered", (1100, 1800)),
        _type("county", "{s} Shire|the County of {s}|the {s} Division", "was formed", (800, 1500)),
    ], [
        _rel("{a} plays its home games at {b}.", "{a} once played a cup final at {b}.", "the home ground of {x}"),
        _rel("{a} was built by {b}.", "{a} was renovated by {b}.", "the builder of {x}"),
        _rel("{a} was born in {b}.", "{a} retired to {b}.", "the town where {x} was born"),
        _rel("{a} lies in {b}.", "{a} is near the border of {b}.", "the county in which {x} lies"),
    ], "has the home ground that opened {dir}"),
    _theme("universities", "universities and their founders", [
        _type("university", "the University of {s}|{s} College|the {s} Academy", "received its charter", (1200, 1900)),
        _type("founder", PERSON, "was born", (1150, 1850)),
        _type("teacher", PERSON, "was born", (1100, 1820)),
        _type("city", "{s}|{s} City|Fort {s}", "was founded", (700, 1500)),
        _type("region", "the {s} Region|the Land of {s}|the {s} Plateau", "was formed", (600, 1400)),
    ], [
        _rel("{a} was founded by {b}.", "{a} awarded an honorary degree to {b}.", "the founder of {x}"),
        _rel("{a} was taught by {b}.", "{a} quarrelled publicly with {b}.", "the teacher of {x}"),
        _rel("{a} spent most of a long career in {b}.", "{a} visited {b} once.", "the city where {x} spent most of a career"),
        _rel("{a} is the capital of {b}.", "{a} trades with {b}.", "the region whose capital is {x}"),
    ], "was founded by the person who was born {dir}"),
    _theme("regional_dialects", "regional dialects", [
        _type("dialect", "the {s} dialect|the {s} Cant|the {s} Speech", "was first written down", (1500, 1900)),
        _type("scholar", PERSON, "was born", (1600, 1900)),
        _type("college", "{s} College|the {s} Seminary|the {s} School", "was founded", (1300, 1850)),
        _type("town", "{s}|{s} Hythe|Nether {s}", "was chartered", (1000, 1700)),
        _type("valley", "the {s} Valley|the {s} Dale|the Glen of {s}", "was surveyed", (1500, 1850)),
    ], [
        _rel("{a} was first recorded by {b}.", "{a} was studied later by {b}.", "the scholar who first recorded {x}"),
        _rel("{a} taught at {b}.", "{a} gave lectures at {b}.", "the college where {x} taught"),
        _rel("{a} is located in {b}.", "{a} owns farmland near {b}.", "the town where {x} is located"),
        _rel("{a} lies in {b}.", "{a} overlooks {b}.", "the valley in which {x} lies"),
    ], "was first recorded by the scholar who was born {dir}"),
]
# fmt: on
THEME = {t["name"]: t for t in THEMES}
FILLER = [
    "Little else is recorded about {a}.",
    "Records of {a} survive in a regional archive.",
    "{a} appears in several local histories.",
    "A short account of {a} was printed in a gazetteer.",
    "Most of what is known about {a} comes from letters and ledgers.",
    "{a} is often confused with {b}.",
]
SYLLABLES = [
    reference.SYL,
    "an bel cor dra eth fin gar hal ist jor kel lun mor nar ost pel".split(),
    "sa ti vo ra ne mu ki lo pa zu re ho ma di ya ke".split(),
    "brek ost val dun hel gri skar tor vin ard bru kol sten ulf eg ran".split(),
    "ami ber cil dol esk fau gil hon ira jul lav mel nov ort pia ser".split(),
    "tak ome ruk sel vid ana zor kem lif wen bra dos gim hur ity pov".split(),
]
"""Syllable sets of the generated names (the first is the reference environment's): one per variant."""

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


@cache
def _normalize():
    """The verifiers' `normalize` (templates/search/normalize.j2), run here as the verifiers run it."""
    namespace = {"re": re}
    exec(jinja(True).get_template("search/normalize.j2").module.normalize(), namespace)
    return namespace["normalize"]


def normalize(text: str) -> str:
    """A name as every search verifier reads it: lower case, words and digits only, no articles."""
    return _normalize()(text)


# -- the family contract ---------------------------------------------------------------------------------------
def plan(scale: str) -> list[tuple[str, int]]:
    """(theme, variant) keys: variant-major, so every prefix (tiny, demo) spans as many themes as it can."""
    n_envs = SCALES[scale][0]
    keys = [(t["name"], v) for v in range(VARIANTS_PER_THEME) for t in THEMES]
    return keys[:n_envs]


def env_id(key) -> str:
    theme, v = key
    return f"search_{theme}_v{v:03d}"


def domain(key) -> str:
    return key[0]


def variant_config(key, seed: int) -> dict:
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


# -- the corpus ------------------------------------------------------------------------------------------------
def _words(text: str) -> list[str]:
    """A name's words as the verifier sees them (the reference normalization: lower case, no articles)."""
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
    year and links) is what the verifier and the question writer read, and no tool exposes it."""
    levels = _make_entities(theme, cfg, rng)
    entities = [e for level in levels for e in level]
    numbers = rng.sample(range(1, 10 ** cfg["id_width"]), len(entities))
    for e, n in zip(entities, numbers, strict=True):
        e["doc_id"] = f"{cfg['id_prefix']}{n:0{cfg['id_width']}d}"
    rows = [
        (e["doc_id"], e["title"], _body(theme, e, levels[e["kind"]], rng), e["ref"], e["kind"], e["year"],
         e.get("main", {}).get("doc_id"), e.get("trap", {}).get("doc_id"))
        for e in entities
    ]  # fmt: skip
    rng.shuffle(rows)
    if path.exists():
        path.unlink()
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE VIRTUAL TABLE docs USING fts5(doc_id UNINDEXED, title, body);"
        "CREATE TABLE entities (doc_id TEXT PRIMARY KEY, title TEXT UNIQUE, ref TEXT, kind INTEGER,"
        " year INTEGER, main TEXT, trap TEXT);"
    )
    db.executemany("INSERT INTO docs VALUES (?, ?, ?)", [r[:3] for r in rows])
    db.executemany("INSERT INTO entities VALUES (?, ?, ?, ?, ?, ?, ?)", [(r[0], r[1], *r[3:]) for r in rows])
    db.commit()
    db.close()


# -- the environment -------------------------------------------------------------------------------------------
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


def render_sources(key, seed: int) -> dict[str, str]:
    """tools.py and verify.py of a variant: where its tool signatures and its rules come from."""
    theme, v = key
    cfg = variant_config(key, seed)
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


def build_env(store, key, seed: int) -> Path:
    """Write `<store>/<env_id>/` for one variant, deterministically."""
    theme = THEME[key[0]]
    cfg = variant_config(key, seed)
    out = Path(store) / env_id(key)
    (out / "state").mkdir(parents=True, exist_ok=True)
    for name, text in render_sources(key, seed).items():
        (out / name).write_text(text)
    make_corpus(
        out / "state" / "db.sqlite", theme, cfg, random.Random(f"{seed}:search:{key[0]}:{key[1]}:corpus")
    )
    spec = EnvSpec(
        id=env_id(key),
        category=CATEGORY,
        domain=domain(key),
        description=_description(theme, cfg),
        tools=tools_from_module(load_tools_module(out / "tools.py")),
        provenance=Provenance(producer="template", family=f"search/{key[0]}", seed=seed, version=VERSION),
    )
    write_env_spec(out, spec)
    return out


# -- tasks -----------------------------------------------------------------------------------------------------
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
            "compare": theme["compare"].format(dir=direction),
        }
        return slots, [a, ents[a["main"]], b, ents[b["main"]]], win, b if win is a else a
    path, target = [item], item["ref"]
    for _ in range(HOPS[kind]):
        target = theme["rels"][path[-1]["kind"]]["phrase"].format(x=target)
        path.append(ents[path[-1]["main"]])
    return {"target": target, "topic": theme["topic"]}, path[:-1], path[-1], ents[path[-2]["trap"]]


def make_tasks(env_dir, key, seed: int, n_tasks: int) -> list[dict]:
    """At most n_tasks candidates, the kinds taken in turn (a kind whose questions run out drops out)."""
    theme, cfg = THEME[key[0]], variant_config(key, seed)
    ents = _entities(Path(env_dir))
    pools = _pools(ents, random.Random(f"{seed}:search:{key[0]}:{key[1]}:pools"))
    out, seen, k = [], set(), 0
    while len(out) < n_tasks and any(pools.values()):
        kind = list(PROMPTS)[k % len(PROMPTS)]
        k += 1
        if not pools[kind]:
            continue
        rng = random.Random(f"{seed}:search:{key[0]}:{key[1]}:task:{k}")
        slots, hops, answer, guess = _question(theme, ents, kind, pools[kind].pop(), rng)
        t_index = rng.randrange(len(PROMPTS[kind]))
        prompt = prompt_template(PROMPTS[kind][t_index], trim=True).render(**slots)
        prompt = prompt[0].upper() + prompt[1:]
        if " ".join(prompt.lower().split()) in seen:
            continue
        seen.add(" ".join(prompt.lower().split()))
        calls = [c for i, e in enumerate(hops) for c in _lookup_calls(cfg, e, i == 0)]
        if cfg["submit"]:
            calls.append(ToolCall(name=cfg["names"]["submit"], arguments={"answer": answer["title"]}))
        out.append(
            {
                "template": f"search/{kind}/{t_index}",
                "difficulty": LEVEL[kind],
                "prompt": [prompt],
                "verifier": "check_answer",
                "params": {"expected": answer["title"], "hops": [e["doc_id"] for e in hops]},
                "solution": calls,
                "answer": None if cfg["submit"] else f"The answer is {answer['title']}.",
                "guess": guess["title"],
            }
        )
    return out
