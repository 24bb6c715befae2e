"""The search family's themes, as data: per theme five entity types (name patterns, founding-year verb) and four
relations (the sentence that states a link, a trap sentence, the phrase that asks for the link). Name patterns and
document sentences are str.format patterns ({s}, {g}, {f}, {a}, {b}); the phrases that go into prompts are
jinja2 ({{ x }}, {{ dir }}), rendered by `render_prompt` like every prompt."""

from __future__ import annotations


def _type(noun: str, patterns: str, year_verb: str, years: tuple[int, int]) -> dict:
    """An entity type. Patterns ("|"-separated) use {s} a stem that look-alikes share, {g} a fresh given name,
    {f} a surname from a small shared pool; a leading "the " is the article the name takes in a sentence."""
    return {"noun": noun, "patterns": patterns.split("|"), "year_verb": year_verb, "years": years}


def _rel(main: str, trap: str, phrase: str) -> dict:
    """A link from one type to the next: the sentence that states it ({a} -> {b}), a trap sentence naming
    another entity of b's type, and the noun phrase that asks for b given a description {{ x }} of a."""
    return {"main": main, "trap": trap, "phrase": phrase}


def _theme(name: str, topic: str, types: list[dict], rels: list[dict], compare: str) -> dict:
    """`compare` asks about the first link's year, with {{ dir }} = earlier | later (the comparison questions)."""
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
        _rel("{a} was founded by {b}.", "{a} was later managed by {b}.", "the founder of {{ x }}"),
        _rel("{a} was born in {b}.", "{a} later moved to {b}.", "the town where {{ x }} was born"),
        _rel("{b} flows through {a}.", "{a} lies a few miles from {b}.", "the river that flows through {{ x }}"),
        _rel("{a} rises in {b}.", "{a} is fed by streams from {b}.", "the upland where {{ x }} rises"),
    ], "has the founder who was born {{ dir }}"),
    _theme("river_towns", "river towns and their fairs", [
        _type("fair", "the {s} Fair|the {s} Horse Fair|the {s} Wool Fair", "was first held", (1300, 1800)),
        _type("town", "{s}|{s} Quay|{s} Bridge", "was chartered", (1100, 1600)),
        _type("river", "the {s} River|the River {s}|the {s} Water", "was first mapped", (1500, 1800)),
        _type("port", "Port {s}|{s} Haven|{s} Mouth", "was founded", (900, 1500)),
        _type("province", "the Province of {s}|the {s} March|{s} Shire", "was formed", (800, 1400)),
    ], [
        _rel("{a} is held every year in {b}.", "Traders at {a} mostly come from {b}.", "the town that hosts {{ x }}"),
        _rel("{a} stands on the banks of {b}.", "{a} draws water from a canal linked to {b}.", "the river on which {{ x }} stands"),
        _rel("{a} reaches the sea at {b}.", "Barges on {a} once sailed as far as {b}.", "the port where {{ x }} reaches the sea"),
        _rel("{a} is the chief harbour of {b}.", "{a} trades mostly with {b}.", "the province whose chief harbour is {{ x }}"),
    ], "is held in the town that was chartered {{ dir }}"),
    _theme("botanical_expeditions", "botanical expeditions", [
        _type("plant", "{s}ia {g}ensis|{s}ia {g}ana|{s}um {g}ii", "was described", (1750, 1900)),
        _type("expedition", "the {s} Expedition|the {s} Survey|the {s} Voyage", "set out", (1740, 1890)),
        _type("botanist", PERSON, "was born", (1760, 1890)),
        _type("garden", "the {s} Botanic Garden|the {s} Physic Garden|the {s} Arboretum", "was laid out", (1600, 1850)),
        _type("city", "{s}|{s} City|New {s}", "was founded", (900, 1600)),
    ], [
        _rel("{a} was first collected by {b}.", "{a} was also reported by {b}.", "the expedition that first collected {{ x }}"),
        _rel("{a} was led by {b}.", "{a} carried letters of introduction from {b}.", "the leader of {{ x }}"),
        _rel("{a} was curator of {b}.", "{a} corresponded with the keepers of {b}.", "the garden of which {{ x }} was curator"),
        _rel("{a} lies in {b}.", "{a} received seeds from {b}.", "the city in which {{ x }} lies"),
    ], "was first collected by the expedition that set out {{ dir }}"),
    _theme("chess_clubs", "chess clubs and tournaments", [
        _type("tournament", "the {s} Open|the {s} Invitational|the {s} Congress", "was first held", (1850, 1960)),
        _type("player", PERSON, "was born", (1820, 1940)),
        _type("club", "the {s} Chess Club|the {s} Chess Circle|the {s} Knights", "was founded", (1820, 1930)),
        _type("venue", "Cafe {s}|the {s} Hall|the {s} Rooms", "opened", (1780, 1900)),
        _type("town", "{s}|{s} Green|West {s}", "was chartered", (1100, 1700)),
    ], [
        _rel("{a} was won by {b}.", "{b} finished second at {a}.", "the winner of {{ x }}"),
        _rel("{a} played for {b}.", "{a} once gave a simultaneous exhibition at {b}.", "the club {{ x }} played for"),
        _rel("{a} meets at {b}.", "{a} held its centenary dinner at {b}.", "the venue where {{ x }} meets"),
        _rel("{a} stands in {b}.", "{a} was designed by an architect from {b}.", "the town where {{ x }} stands"),
    ], "was won by the player who was born {{ dir }}"),
    _theme("shipwrecks", "shipwrecks and their crews", [
        _type("ship", "the SS {s}|the {s} Star|the {s} Maid|the {s} Queen", "was launched", (1820, 1930)),
        _type("captain", PERSON, "was born", (1780, 1900)),
        _type("port", "{s}|Port {s}|{s} Harbour", "was founded", (900, 1600)),
        _type("bay", "{s} Bay|the {s} Sound|the Bight of {s}", "was charted", (1500, 1800)),
        _type("headland", "Cape {s}|{s} Head|{s} Point", "was named", (1450, 1750)),
    ], [
        _rel("{a} sank under the command of {b}.", "{a} was earlier commanded by {b}.", "the captain under whom {{ x }} sank"),
        _rel("{a} was born in {b}.", "{a} retired to {b}.", "the port where {{ x }} was born"),
        _rel("{a} lies on {b}.", "{a} faces {b} across the strait.", "the bay on which {{ x }} lies"),
        _rel("{a} is sheltered by {b}.", "{a} is often compared with {b}.", "the headland that shelters {{ x }}"),
    ], "sank under the captain who was born {{ dir }}"),
    _theme("observatories", "observatories and astronomers", [
        _type("observatory", "the {s} Observatory|the {s} Station|the {s} Dome", "opened", (1700, 1950)),
        _type("astronomer", PERSON, "was born", (1700, 1920)),
        _type("college", "the University of {s}|{s} College|the {s} Institute", "was founded", (1300, 1880)),
        _type("city", "{s}|{s} City|Old {s}", "was incorporated", (1000, 1700)),
        _type("province", "the Province of {s}|{s} Land|the {s} Region", "was created", (800, 1500)),
    ], [
        _rel("The first director of {a} was {b}.", "{b} taught a summer course at {a}.", "the first director of {{ x }}"),
        _rel("{a} studied at {b}.", "{a} lectured at {b}.", "the college where {{ x }} studied"),
        _rel("{a} is located in {b}.", "{a} has a field station near {b}.", "the city where {{ x }} is located"),
        _rel("{a} is the capital of {b}.", "{a} sends its members of parliament to {b}.", "the province whose capital is {{ x }}"),
    ], "had the first director who was born {{ dir }}"),
    _theme("monasteries", "monasteries and their founders", [
        _type("monastery", "the {s} Abbey|the {s} Priory|the Monastery of {s}", "was consecrated", (600, 1300)),
        _type("abbot", PERSON, "was born", (560, 1260)),
        _type("cathedral", "the {s} Minster|the Cathedral of {s}|the {s} Basilica", "was consecrated", (500, 1200)),
        _type("city", "{s}|{s} Town|High {s}", "was first recorded", (300, 1000)),
        _type("realm", "the Kingdom of {s}|the {s} March|the Duchy of {s}", "was established", (300, 900)),
    ], [
        _rel("{a} was founded by {b}.", "{a} was rebuilt under {b}.", "the founder of {{ x }}"),
        _rel("{a} was trained at {b}.", "{a} made a pilgrimage to {b}.", "the cathedral where {{ x }} was trained"),
        _rel("{a} stands in {b}.", "Pilgrims to {a} often stopped in {b}.", "the city where {{ x }} stands"),
        _rel("{a} belonged to {b}.", "{a} paid tribute to {b}.", "the realm to which {{ x }} belonged"),
    ], "was founded by the abbot who was born {{ dir }}"),
    _theme("rail_lines", "railway lines and stations", [
        _type("line", "the {s} Railway|the {s} Line|the {s} Branch", "opened", (1830, 1930)),
        _type("station", "{s} Station|{s} Junction|{s} Halt", "opened", (1830, 1930)),
        _type("architect", PERSON, "was born", (1780, 1890)),
        _type("town", "{s}|{s} Cross|Lower {s}", "was chartered", (1100, 1700)),
        _type("county", "{s} Shire|the County of {s}|the {s} Riding", "was formed", (800, 1500)),
    ], [
        _rel("{a} ends at {b}.", "{a} once ran excursions to {b}.", "the terminus of {{ x }}"),
        _rel("{a} was designed by {b}.", "{a} was enlarged by {b}.", "the architect of {{ x }}"),
        _rel("{a} was born in {b}.", "{a} worked for years in {b}.", "the town where {{ x }} was born"),
        _rel("{a} is the county town of {b}.", "{a} borders {b}.", "the county whose county town is {{ x }}"),
    ], "ends at the station that opened {{ dir }}"),
    _theme("guilds", "craft guilds", [
        _type("guild", "the Guild of {s}|the {s} Guild|the {s} Fraternity", "received its charter", (1200, 1600)),
        _type("master", PERSON, "was born", (1150, 1580)),
        _type("street", "{s} Lane|{s} Street|{s} Row", "was paved", (1300, 1800)),
        _type("quarter", "the {s} Quarter|the {s} Ward|{s} Side", "was walled", (1100, 1500)),
        _type("city", "{s}|{s} Burgh|Great {s}", "was founded", (700, 1200)),
    ], [
        _rel("The first master of {a} was {b}.", "{b} was expelled from {a}.", "the first master of {{ x }}"),
        _rel("{a} kept a workshop on {b}.", "{a} lodged on {b}.", "the street where {{ x }} kept a workshop"),
        _rel("{a} runs through {b}.", "{a} leads toward {b}.", "the quarter that {{ x }} runs through"),
        _rel("{a} is a district of {b}.", "{a} supplied cloth to {b}.", "the city of which {{ x }} is a district"),
    ], "had the first master who was born {{ dir }}"),
    _theme("record_labels", "bands and record labels", [
        _type("album", "{s} Sessions|{s} Nights|the {s} Tapes", "was released", (1955, 2015)),
        _type("band", "the {s} Collective|the {s} Quartet|the {s} Band", "formed", (1950, 2010)),
        _type("label", "{s} Records|{s} Sound|{s} Recordings", "was founded", (1940, 2000)),
        _type("founder", PERSON, "was born", (1910, 1980)),
        _type("city", "{s}|{s} City|South {s}", "was incorporated", (1700, 1900)),
    ], [
        _rel("{a} was recorded by {b}.", "{a} featured guest vocals from {b}.", "the band that recorded {{ x }}"),
        _rel("{a} signed to {b}.", "{a} was courted by {b}.", "the label to which {{ x }} signed"),
        _rel("{a} was founded by {b}.", "{a} was briefly run by {b}.", "the founder of {{ x }}"),
        _rel("{a} grew up in {b}.", "{a} now lives in {b}.", "the city where {{ x }} grew up"),
    ], "was recorded by the band that formed {{ dir }}"),
    _theme("inventors_patents", "inventors and their patents", [
        _type("device", "the {s} Engine|the {s} Loom|the {s} Valve|the {s} Lamp", "was patented", (1780, 1920)),
        _type("inventor", PERSON, "was born", (1740, 1890)),
        _type("firm", "{s} and Sons|{s} Manufacturing|the {s} Company", "was established", (1780, 1920)),
        _type("city", "{s}|{s} Mills|North {s}", "was incorporated", (1100, 1800)),
        _type("region", "the {s} Valley Region|{s} Land|the {s} Basin", "was first mapped", (1400, 1800)),
    ], [
        _rel("{a} was invented by {b}.", "{a} was improved by {b}.", "the inventor of {{ x }}"),
        _rel("{a} sold the patent to {b}.", "{a} briefly worked for {b}.", "the firm that bought the patent from {{ x }}"),
        _rel("{a} had its factory in {b}.", "{a} had a sales office in {b}.", "the city where {{ x }} had its factory"),
        _rel("{a} is the largest town in {b}.", "{a} ships its goods through {b}.", "the region whose largest town is {{ x }}"),
    ], "was invented by the person who was born {{ dir }}"),
    _theme("vineyards", "vineyards and wines", [
        _type("wine", "{s} Reserve|{s} Cuvee|{s} Late Harvest", "was first bottled", (1800, 1990)),
        _type("estate", "Chateau {s}|the {s} Estate|Domaine {s}", "was established", (1600, 1900)),
        _type("winemaker", PERSON, "was born", (1580, 1880)),
        _type("village", "{s}|{s} le Bas|Saint {s}", "was first recorded", (900, 1400)),
        _type("valley", "the {s} Valley|the Vale of {s}|the {s} Coombe", "was first surveyed", (1500, 1800)),
    ], [
        _rel("{a} is made at {b}.", "{a} is blended with grapes bought from {b}.", "the estate that makes {{ x }}"),
        _rel("{a} was planted by {b}.", "{a} was leased for a decade to {b}.", "the person who planted {{ x }}"),
        _rel("{a} was born in {b}.", "{a} is buried in {b}.", "the village where {{ x }} was born"),
        _rel("{a} lies in {b}.", "{a} overlooks {b}.", "the valley in which {{ x }} lies"),
    ], "is made at the estate that was established {{ dir }}"),
    _theme("lighthouses", "lighthouses and keepers", [
        _type("lighthouse", "the {s} Light|the {s} Lighthouse|the {s} Beacon", "was first lit", (1700, 1920)),
        _type("keeper", PERSON, "was born", (1660, 1890)),
        _type("island", "{s} Island|the Isle of {s}|{s} Holm", "was settled", (700, 1600)),
        _type("island group", "the {s} Isles|the {s} Islands|the {s} Skerries", "was charted", (1400, 1800)),
        _type("sea", "the {s} Sea|the Sea of {s}|the {s} Deep", "was named", (1300, 1700)),
    ], [
        _rel("The first keeper of {a} was {b}.", "{b} relieved the keeper of {a} one winter.", "the first keeper of {{ x }}"),
        _rel("{a} was born on {b}.", "{a} kept a boat on {b}.", "the island where {{ x }} was born"),
        _rel("{a} is part of {b}.", "{a} can be seen from {b}.", "the island group that includes {{ x }}"),
        _rel("{a} lie in {b}.", "{a} shelter fishing boats from {b}.", "the sea around {{ x }}"),
    ], "had the first keeper who was born {{ dir }}"),
    _theme("football_clubs", "football clubs and grounds", [
        _type("club", "{s} United|{s} Rovers|{s} Athletic|{s} Wanderers", "was formed", (1860, 1930)),
        _type("ground", "{s} Park|{s} Road|the {s} Stadium", "opened", (1860, 1960)),
        _type("builder", PERSON, "was born", (1800, 1910)),
        _type("town", "{s}|{s} Vale|East {s}", "was chartered", (1100, 1800)),
        _type("county", "{s} Shire|the County of {s}|the {s} Division", "was formed", (800, 1500)),
    ], [
        _rel("{a} plays its home games at {b}.", "{a} once played a cup final at {b}.", "the home ground of {{ x }}"),
        _rel("{a} was built by {b}.", "{a} was renovated by {b}.", "the builder of {{ x }}"),
        _rel("{a} was born in {b}.", "{a} retired to {b}.", "the town where {{ x }} was born"),
        _rel("{a} lies in {b}.", "{a} is near the border of {b}.", "the county in which {{ x }} lies"),
    ], "has the home ground that opened {{ dir }}"),
    _theme("universities", "universities and their founders", [
        _type("university", "the University of {s}|{s} College|the {s} Academy", "received its charter", (1200, 1900)),
        _type("founder", PERSON, "was born", (1150, 1850)),
        _type("teacher", PERSON, "was born", (1100, 1820)),
        _type("city", "{s}|{s} City|Fort {s}", "was founded", (700, 1500)),
        _type("region", "the {s} Region|the Land of {s}|the {s} Plateau", "was formed", (600, 1400)),
    ], [
        _rel("{a} was founded by {b}.", "{a} awarded an honorary degree to {b}.", "the founder of {{ x }}"),
        _rel("{a} was taught by {b}.", "{a} quarrelled publicly with {b}.", "the teacher of {{ x }}"),
        _rel("{a} spent most of a long career in {b}.", "{a} visited {b} once.", "the city where {{ x }} spent most of a career"),
        _rel("{a} is the capital of {b}.", "{a} trades with {b}.", "the region whose capital is {{ x }}"),
    ], "was founded by the person who was born {{ dir }}"),
    _theme("regional_dialects", "regional dialects", [
        _type("dialect", "the {s} dialect|the {s} Cant|the {s} Speech", "was first written down", (1500, 1900)),
        _type("scholar", PERSON, "was born", (1600, 1900)),
        _type("college", "{s} College|the {s} Seminary|the {s} School", "was founded", (1300, 1850)),
        _type("town", "{s}|{s} Hythe|Nether {s}", "was chartered", (1000, 1700)),
        _type("valley", "the {s} Valley|the {s} Dale|the Glen of {s}", "was surveyed", (1500, 1850)),
    ], [
        _rel("{a} was first recorded by {b}.", "{a} was studied later by {b}.", "the scholar who first recorded {{ x }}"),
        _rel("{a} taught at {b}.", "{a} gave lectures at {b}.", "the college where {{ x }} taught"),
        _rel("{a} is located in {b}.", "{a} owns farmland near {b}.", "the town where {{ x }} is located"),
        _rel("{a} lies in {b}.", "{a} overlooks {b}.", "the valley in which {{ x }} lies"),
    ], "was first recorded by the scholar who was born {{ dir }}"),
]
# fmt: on
THEME = {t["name"]: t for t in THEMES}
