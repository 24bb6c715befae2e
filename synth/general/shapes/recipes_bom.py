"""Shape recipes_bom: products built from components through bills of materials (nested: a product may use a
sub-assembly built from components), component stock in dated lots, allowed substitutions and production orders.

Rules that bind (the tools do not enforce them): every run is at least the product's minimum batch; a scrap
allowance adds a share to every raw component a run needs; expired lots are never used and the lot that expires
first is used first; a short component may be replaced by its listed substitute at the listed ratio, but never
by a restricted one (an allergen, a banned material) in a product of the restricted line. So how many units can be
built, what a run consumes and which runs fit together all depend on the rules.
"""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
from pathlib import Path

from ..base import Shape, Variant, call, candidate, phrase, read_db, render, take_turns, write_db

NAME = "recipes_bom"

SCHEMA = """
CREATE TABLE products (id TEXT PRIMARY KEY, name TEXT UNIQUE, line TEXT, min_batch INTEGER, kind TEXT);
CREATE TABLE components (id TEXT PRIMARY KEY, name TEXT UNIQUE, unit TEXT, restricted INTEGER);
CREATE TABLE bom (product_id TEXT, part_id TEXT, quantity INTEGER);
CREATE TABLE lots (id TEXT PRIMARY KEY, component_id TEXT, quantity INTEGER, expires TEXT);
CREATE TABLE substitutes (component_id TEXT, substitute_id TEXT, ratio REAL);
CREATE TABLE production_orders (id TEXT PRIMARY KEY, product_id TEXT, quantity INTEGER, status TEXT, created TEXT);
CREATE TABLE consumption (id TEXT PRIMARY KEY, order_id TEXT, lot_id TEXT, component_id TEXT, quantity INTEGER);
"""


def _v(name, title, unit_word, restricted, line, components, subs, assemblies, products, scale):
    return {
        "name": name,
        "title": title,
        "unit_word": unit_word,
        "restricted": restricted,
        "line": line,
        "components": components,
        "subs": subs,
        "assemblies": assemblies,
        "products": products,
        "scale": scale,
    }


VOCABS = [
    _v(
        "bakery",
        "an artisan bakery",
        "pieces",
        "contains nuts",
        "nut-free",
        [
            ("Strong white flour", "g", 0),
            ("Wholemeal flour", "g", 0),
            ("Spelt flour", "g", 0),
            ("Unsalted butter", "g", 0),
            ("Caster sugar", "g", 0),
            ("Free-range eggs", "each", 0),
            ("Whole milk", "ml", 0),
            ("Oat milk", "ml", 0),
            ("Almond milk", "ml", 1),
            ("Ground almonds", "g", 1),
            ("Hazelnut praline", "g", 1),
            ("Dark chocolate", "g", 0),
            ("Sunflower seeds", "g", 0),
            ("Fresh yeast", "g", 0),
            ("Sea salt", "g", 0),
            ("Dried cranberries", "g", 0),
        ],
        [
            ("Strong white flour", "Spelt flour", 1.0),
            ("Whole milk", "Almond milk", 1.0),
            ("Whole milk", "Oat milk", 1.25),
            ("Unsalted butter", "Hazelnut praline", 1.5),
            ("Dark chocolate", "Hazelnut praline", 1.25),
            ("Dried cranberries", "Sunflower seeds", 1.0),
        ],
        ["Laminated pastry dough", "Sourdough starter", "Sweet shortcrust"],
        [
            "Butter croissant",
            "Pain au chocolat",
            "Country sourdough loaf",
            "Seeded rye loaf",
            "Fruit tart",
            "Chocolate brownie",
            "Cinnamon bun",
            "Almond financier",
        ],
        (20, 250),
    ),
    _v(
        "furniture_workshop",
        "a furniture workshop",
        "pieces",
        "uses formaldehyde-based resin",
        "low-emission",
        [
            ("Oak board 2 m", "board", 0),
            ("Walnut board 2 m", "board", 0),
            ("Birch plywood sheet", "sheet", 0),
            ("MDF sheet", "sheet", 1),
            ("Particle board sheet", "sheet", 1),
            ("Steel hairpin leg", "each", 0),
            ("Brass hinge", "each", 0),
            ("Soft-close drawer runner", "pair", 0),
            ("Wood screw 40 mm", "each", 0),
            ("Hardwax oil", "ml", 0),
            ("Water-based lacquer", "ml", 0),
            ("Urea-formaldehyde glue", "ml", 1),
            ("PVA wood glue", "ml", 0),
            ("Felt pad", "each", 0),
            ("Beech dowel", "each", 0),
        ],
        [
            ("Oak board 2 m", "Walnut board 2 m", 1.0),
            ("Birch plywood sheet", "MDF sheet", 1.0),
            ("PVA wood glue", "Urea-formaldehyde glue", 1.0),
            ("Hardwax oil", "Water-based lacquer", 1.5),
            ("Beech dowel", "Wood screw 40 mm", 2.0),
            ("Birch plywood sheet", "Particle board sheet", 1.25),
        ],
        ["Drawer box", "Table top panel", "Cabinet carcass"],
        [
            "Oak dining table",
            "Walnut side table",
            "Bedside cabinet",
            "Chest of drawers",
            "Bookcase",
            "Writing desk",
            "Coffee table",
            "Sideboard",
        ],
        (2, 40),
    ),
    _v(
        "brewery",
        "a craft brewery",
        "cases",
        "contains gluten",
        "gluten-free",
        [
            ("Pale malt", "kg", 1),
            ("Crystal malt", "kg", 1),
            ("Sorghum syrup", "kg", 0),
            ("Buckwheat malt", "kg", 0),
            ("Rice syrup", "kg", 0),
            ("Cascade hops", "g", 0),
            ("Citra hops", "g", 0),
            ("Saaz hops", "g", 0),
            ("Ale yeast", "g", 0),
            ("Lager yeast", "g", 0),
            ("Brewing salts", "g", 0),
            ("Bottle caps", "each", 0),
            ("Amber bottles 330 ml", "each", 0),
            ("Orange peel", "g", 0),
            ("Oat malt", "kg", 1),
        ],
        [
            ("Cascade hops", "Citra hops", 0.8),
            ("Sorghum syrup", "Rice syrup", 1.25),
            ("Buckwheat malt", "Oat malt", 1.0),
            ("Pale malt", "Buckwheat malt", 1.2),
            ("Saaz hops", "Cascade hops", 1.0),
            ("Ale yeast", "Lager yeast", 1.0),
        ],
        ["Hopped wort", "Bottling kit", "Yeast starter"],
        [
            "Session pale ale",
            "West coast IPA",
            "Pilsner",
            "Gluten-free pale",
            "Citrus wheat beer",
            "Sorghum amber",
            "Oat stout",
            "Saison",
        ],
        (2, 60),
    ),
    _v(
        "electronics_assembler",
        "an electronics assembly shop",
        "units",
        "contains lead",
        "RoHS",
        [
            ("Microcontroller STM32", "each", 0),
            ("Microcontroller ATmega", "each", 0),
            ("USB-C connector", "each", 0),
            ("Micro-USB connector", "each", 0),
            ("0603 resistor", "each", 0),
            ("0603 capacitor", "each", 0),
            ("Leaded solder paste", "g", 1),
            ("Lead-free solder paste", "g", 0),
            ("Crystal oscillator", "each", 0),
            ("LDO regulator", "each", 0),
            ("Buck converter module", "each", 0),
            ("Status LED", "each", 0),
            ("Two-layer PCB blank", "each", 0),
            ("Four-layer PCB blank", "each", 0),
            ("Pin header strip", "each", 0),
        ],
        [
            ("Lead-free solder paste", "Leaded solder paste", 1.0),
            ("USB-C connector", "Micro-USB connector", 1.0),
            ("LDO regulator", "Buck converter module", 1.0),
            ("Two-layer PCB blank", "Four-layer PCB blank", 1.0),
            ("Microcontroller STM32", "Microcontroller ATmega", 1.0),
            ("0603 capacitor", "0603 resistor", 2.0),
        ],
        ["Power stage", "MCU core module", "Connector board"],
        [
            "Sensor hub board",
            "Motor driver board",
            "LED controller",
            "USB data logger",
            "Weather station board",
            "Smart plug board",
            "Audio amplifier board",
            "Keypad controller",
        ],
        (1, 30),
    ),
]


UNIT_WORDS = {
    "g": "grams",
    "ml": "millilitres",
    "kg": "kilograms",
    "each": "units",
    "board": "boards",
    "sheet": "sheets",
    "pair": "pairs",
}


def params_of(v: Variant) -> dict:
    rng = v.rng("rules")
    return {
        "scrap": rng.choice([5, 8, 10, 12]),
        "today": (dt.date(2025, 6, 2) + dt.timedelta(days=rng.randrange(60))).isoformat(),
    }


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# -- the rules, as the task maker, the verifier and the tests apply them ------------------------------------
class Works:
    """The workshop's state and rules: BOMs expanded to raw components, stock, substitutions."""

    def __init__(self, data: dict, p: dict) -> None:
        self.p, self.today, self.scrap = p, p["today"], p["scrap"]
        self.products = {x["id"]: x for x in data["products"]}
        self.components = {x["id"]: x for x in data["components"]}
        self.bom: dict[str, list[tuple[str, int]]] = {}
        for b in data["bom"]:
            self.bom.setdefault(b["product_id"], []).append((b["part_id"], b["quantity"]))
        self.lots = {x["id"]: dict(x) for x in data["lots"]}
        self.subs = {s["component_id"]: (s["substitute_id"], s["ratio"]) for s in data["substitutes"]}
        self._raw: dict[str, dict[str, int]] = {}

    def raw(self, product: str) -> dict[str, int]:
        """Raw components per unit, sub-assemblies expanded (a copy: made once, the bill of materials never
        changes)."""
        if product not in self._raw:
            self._raw[product] = self._expand(product)
        return dict(self._raw[product])

    def _expand(self, product: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for part, q in self.bom[product]:
            if part in self.components:
                out[part] = out.get(part, 0) + q
            else:
                for c, q2 in self.raw(part).items():
                    out[c] = out.get(c, 0) + q * q2
        return out

    def need(self, product: str, units: int) -> dict[str, int]:
        """Raw components a run of `units` consumes, the scrap allowance included (rounded up)."""
        return {c: ceil_div(q * units * (100 + self.scrap), 100) for c, q in self.raw(product).items()}

    def good_lots(self, comp: str) -> list[dict]:
        return sorted(
            (x for x in self.lots.values() if x["component_id"] == comp and x["expires"] >= self.today),
            key=lambda x: (x["expires"], x["id"]),
        )

    def stock(self, comp: str) -> int:
        return sum(
            x["quantity"]
            for x in self.lots.values()
            if x["component_id"] == comp and x["expires"] >= self.today
        )

    def physical(self, comp: str) -> int:
        return sum(x["quantity"] for x in self.lots.values() if x["component_id"] == comp)

    def may_substitute(self, product: str, comp: str) -> tuple[str, float] | None:
        sub = self.subs.get(comp)
        if sub is None:
            return None
        if self.products[product]["line"] != "standard" and self.components[sub[0]]["restricted"]:
            return None
        return sub

    def draw(self, product: str, units: int) -> dict[str, int] | None:
        """Component -> units a run uses, substitutes for shortfalls included; None when it cannot be built."""
        need = self.need(product, units)
        use = dict(need)
        for comp, n in need.items():
            have = self.stock(comp)
            if have >= n:
                continue
            sub = self.may_substitute(product, comp)
            if sub is None:
                return None
            use[comp] = have
            use[sub[0]] = use.get(sub[0], 0) + ceil_div(int(round((n - have) * sub[1] * 100)), 100)
        if any(self.stock(c) < n for c, n in use.items()):
            return None
        return {c: n for c, n in use.items() if n > 0}

    def most(self, product: str) -> int:
        """The largest run current stock allows (0 when not even one unit)."""
        u = 0
        while u < 2000 and self.draw(product, u + 1) is not None:
            u += 1
        return u

    def picks(self, uses: dict[str, int]) -> list[tuple[str, int]]:
        """(lot, units) for each component used, the lot that expires first first."""
        out = []
        for comp in sorted(uses):
            left = uses[comp]
            for lot in self.good_lots(comp):
                take = min(left, lot["quantity"])
                if take:
                    out.append((lot["id"], take))
                    left -= take
                if not left:
                    break
        return out

    def take(self, picks: list[tuple[str, int]]) -> None:
        for lot, n in picks:
            self.lots[lot]["quantity"] -= n

    def fits(self, runs: dict[str, int], stock: dict[str, int] | None = None) -> bool:
        """Whether runs (product -> units) fit current stock together, without substitutes (`stock`: each
        component's, when the caller holds it for many questions on unchanged lots)."""
        total: dict[str, int] = {}
        for prod, units in runs.items():
            for c, n in self.need(prod, units).items():
                total[c] = total.get(c, 0) + n
        if stock is None:
            return all(self.stock(c) >= n for c, n in total.items())
        return all(stock[c] >= n for c, n in total.items())


class RecipesBom(Shape):
    NAME = NAME
    VOCABS = VOCABS

    def build(self, out: Path, v: Variant) -> str:
        p = params_of(v)
        voc = v.vocab
        ctx = {"v": voc, "index": v.index, **p}
        (out / "tools.py").write_text(render(NAME, "tools.py.j2", **ctx))
        (out / "verify.py").write_text(render(NAME, "verify.py.j2", **ctx))
        write_db(out / "state" / "db.sqlite", SCHEMA, self._data(v, p))
        return (
            f"You are the production planner of {voc['title']}. Today is {p['today']}. Products are built from "
            "components through bills of materials; a product may use a sub-assembly, which is built from its "
            "own components within the same run. Use the tools to look things up and to act for the staff. "
            "Policy, which the tools do not enforce for you: a production run of a product is never smaller than "
            "its minimum batch (a request for fewer makes the minimum batch). Every run consumes its raw "
            f"components plus a {p['scrap']}% scrap allowance, worked out per component over the whole run and "
            "rounded up to a whole unit. A lot whose expiry date is before today is expired and never used; use "
            "the lot that expires first, then the next. When a component runs short, its listed substitute may "
            "make up the shortfall at the listed ratio (substitute units per missing unit, rounded up), after "
            "every unit of the component itself is used; a component with no usable substitute that runs short "
            "means the run cannot start. Components flagged restricted ("
            f"{voc['restricted']}) are never used in products of the {voc['line']} line, as substitutes "
            "included. To start a run, create its production order, then issue every lot it uses to it. Answer "
            "questions with submit_answer; after making changes, reply to the user without a tool call."
        )

    def _data(self, v: Variant, p: dict) -> dict:
        rng = v.rng("data")
        voc = v.vocab
        today = dt.date.fromisoformat(p["today"])
        lo, hi = voc["scale"]
        comps = [(f"M{i + 11}", n, u, r) for i, (n, u, r) in enumerate(voc["components"])]
        cid = {c[1]: c[0] for c in comps}
        plain = [c[0] for c in comps if not c[3]]
        bom, products = [], []
        for i, name in enumerate(voc["assemblies"]):
            aid = f"A{i + 1}"
            products.append((aid, name, "sub-assembly", 1, "sub-assembly"))
            for c in rng.sample(plain, 2):
                bom.append((aid, c, rng.randint(lo, max(lo, hi // 2))))
        lines = ["standard", voc["line"]]
        for i, name in enumerate(voc["products"]):
            pid = f"P{i + 11}"
            line = lines[i % 2] if rng.random() < 0.8 else lines[(i + 1) % 2]
            products.append((pid, name, line, rng.choice([4, 6, 8, 10, 12]), "product"))
            if rng.random() < 0.6:
                bom.append((pid, f"A{rng.randint(1, len(voc['assemblies']))}", rng.randint(1, 2)))
            pool = [c[0] for c in comps if line == "standard" or not c[3]]
            for c in rng.sample(pool, rng.randint(2, 3)):
                if not any(b[0] == pid and b[1] == c for b in bom):
                    bom.append((pid, c, rng.randint(lo, hi)))
        subs = [(cid[a], cid[b], r) for a, b, r in voc["subs"] if a in cid and b in cid]
        per_unit: dict[str, int] = {}
        for b in bom:
            per_unit[b[1]] = max(per_unit.get(b[1], 0), b[2])
        lots = []
        for c in comps:
            base = per_unit.get(c[0], hi) * rng.randint(6, 30)
            for k in range(rng.choice([1, 2, 2, 3])):
                expired = rng.random() < 0.15
                days = rng.randint(3, 60) if expired else rng.randint(10, 400) + 7 * k
                expires = today - dt.timedelta(days=days) if expired else today + dt.timedelta(days=days)
                lots.append(
                    (
                        f"L{len(lots) + 301}",
                        c[0],
                        max(1, base // (k + 1) + rng.randint(0, lo)),
                        expires.isoformat(),
                    )
                )
        history = [
            (
                f"W{k + 501}",
                rng.choice(products[len(voc["assemblies"]) :])[0],
                rng.randint(10, 40),
                "done",
                (today - dt.timedelta(days=rng.randint(5, 60))).isoformat(),
            )
            for k in range(5)
        ]
        return {
            "products": products,
            "components": [(c[0], c[1], c[2], c[3]) for c in comps],
            "bom": bom,
            "lots": lots,
            "substitutes": subs,
            "production_orders": history,
            "consumption": [],
        }

    def tasks(self, env_dir: Path, v: Variant, n: int) -> list:
        return _Maker(env_dir, v).make(n)


def plan_counts(db: sqlite3.Connection) -> tuple[int, int]:
    return (
        db.execute("SELECT count(*) FROM production_orders").fetchone()[0],
        db.execute("SELECT count(*) FROM consumption").fetchone()[0],
    )


class _Maker:
    def __init__(self, env_dir: Path, v: Variant) -> None:
        self.env_dir, self.v, self.voc = Path(env_dir), v, v.vocab
        self.p = params_of(v)
        self.data = read_db(env_dir)
        self.w = Works(self.data, self.p)
        self.finished = [x for x in self.data["products"] if x["kind"] == "product"]
        self.names = {x["id"]: x["name"] for x in self.data["products"]}
        self.names.update({c["id"]: c["name"] for c in self.data["components"]})

    def shown(self) -> set[int]:
        """Numbers a listing shortcut answers with: minimum batches and row counts."""
        out = {x["min_batch"] for x in self.data["products"]}
        return out | {len(t) for t in self.data.values()} | set(range(0, 4))

    def works(self) -> Works:
        return Works(self.data, self.p)

    def make(self, n: int) -> list:
        makers = [self.can_build, self.start_run, self.plan_line, self.usage, self.start_user, self.two_runs]
        makers += [self.plan_line, self.start_user]
        return take_turns(makers, self.v, n)

    def reads(self, prod: dict) -> list:
        out = [call("list_products"), call("get_bom", product_id=prod["id"])]
        out += [call("get_bom", product_id=a) for a, _ in self.w.bom[prod["id"]] if a.startswith("A")]
        out += [call("component_stock"), call("list_substitutes")]
        return out

    def run_writes(self, w: Works, prod: dict, units: int) -> list | None:
        uses = w.draw(prod["id"], units)
        if uses is None:
            return None
        picks = w.picks(uses)
        w.take(picks)
        return [call("create_production_order", product_id=prod["id"], quantity=units)] + [
            call("issue_lot", product_id=prod["id"], lot_id=lot, quantity=q) for lot, q in picks
        ]

    def naive_uses(self, prod: dict, units: int) -> dict[str, int]:
        """Ignoring the rules: the BOM's direct quantities times the units asked, nothing else."""
        return {c: q * units for c, q in self.w.raw(prod["id"]).items()}

    # -- kinds ------------------------------------------------------------------------------------------
    def can_build(self, rng):
        prod = rng.choice(self.finished)
        value = self.w.most(prod["id"])
        naive = min(self.w.physical(c) // q for c, q in self.w.raw(prod["id"]).items())
        if value < prod["min_batch"] or value == naive or value > 1500 or value in self.shown():
            return None
        i, text = phrase(
            rng,
            [
                "How many {{ unit }} of {{ product }} could we make in one run from the stock we have right now?",
                "What's the largest batch of {{ product }} our current stock allows, in {{ unit }}?",
                "If we used everything on the shelves, how many {{ unit }} of {{ product }} could one production run turn out?",
            ],
            product=prod["name"],
            unit=self.voc["unit_word"],
        )
        return candidate(
            NAME,
            "can_build",
            i,
            level=3,
            prompt=text,
            verifier="check_answer",
            params={"expected": value},
            solution=self.reads(prod) + [call("submit_answer", answer=str(value))],
            guess=str(naive),
            constraints=4,
            distractors=sum(1 for x in self.data["lots"] if x["expires"] < self.p["today"]),
        )

    def usage(self, rng):
        prod = rng.choice(self.finished)
        ask = rng.randint(max(2, prod["min_batch"] - 4), prod["min_batch"] + 10)
        units = max(ask, prod["min_batch"])
        raw = self.w.raw(prod["id"])
        comp = rng.choice(sorted(raw))
        value = self.w.need(prod["id"], units)[comp]
        naive = raw[comp] * ask
        if value == naive:
            return None
        unit = self.data["components"][[c["id"] for c in self.data["components"]].index(comp)]["unit"]
        user = rng.random() < 0.4 and sum(comp in self.w.raw(x["id"]) for x in self.finished) >= 2
        i, text = phrase(
            rng,
            [
                "How much {{ comp }} does a run of {{ ask }} {{ made }} of {{ product }} use up, in {{ unit }}?",
                "If we make {{ ask }} {{ made }} of {{ product }}, how much {{ comp }} will the run consume, in {{ unit }}?",
                "We're planning {{ ask }} {{ made }} of {{ product }}. What quantity of {{ comp }} should I expect the run to "
                "take ({{ unit }})?",
            ]
            if not user
            else [
                "How much {{ comp }} will my next run use, in {{ unit }}?",
                "I'm about to plan a run. What quantity of {{ comp }} ({{ unit }}) will it take?",
                "Can you tell me how much {{ comp }} my planned batch needs ({{ unit }})?",
            ],
            comp=self.names[comp],
            unit=UNIT_WORDS.get(unit, unit),
            made=self.voc["unit_word"],
            ask=ask,
            product=prod["name"],
        )
        instructions = (
            f"You work at {self.voc['title']} and are planning a run of {ask} {prod['name']}. You want to know "
            f"how much {self.names[comp]} it uses. Say which product and how many only when asked."
            if user
            else None
        )
        i += 3 if user else 0
        return candidate(
            NAME,
            "usage",
            i,
            level=3 if any(a.startswith("A") for a, _ in self.w.bom[prod["id"]]) else 2,
            prompt=text,
            verifier="check_answer",
            params={"expected": value},
            solution=self.reads(prod)[:-2] + [call("submit_answer", answer=str(value))],
            guess=str(naive),
            user_instructions=instructions,
            user_facts=2 if user else 0,
            constraints=3,
        )

    def _run(self, rng, want_binding=True):
        prods = list(self.finished)
        rng.shuffle(prods)
        for prod in prods:
            top = self.w.most(prod["id"])
            if top < prod["min_batch"]:
                continue
            ask = rng.randint(max(2, prod["min_batch"] - 5), min(top, prod["min_batch"] + 15))
            units = max(ask, prod["min_batch"])
            w = self.works()
            writes = self.run_writes(w, prod, units)
            if writes is None:
                continue
            uses = self.works().draw(prod["id"], units)
            binds = (
                ask < units
                or set(uses) != set(self.w.raw(prod["id"]))
                or any(
                    self.w.good_lots(c)[0]["id"]
                    != min(x["id"] for x in self.data["lots"] if x["component_id"] == c)
                    for c in uses
                )
            )
            if want_binding and not binds and rng.random() < 0.6:
                continue
            return prod, ask, units, writes, binds
        return None

    def start_run(self, rng):
        got = self._run(rng)
        if got is None:
            return None
        prod, ask, units, writes, binds = got
        i, text = phrase(
            rng,
            [
                "Please start a production run of {{ ask }} {{ unit }} of {{ product }} and issue the stock it needs.",
                "Kick off {{ ask }} {{ unit }} of {{ product }} today: open the production order and book out the components.",
                "We need {{ ask }} {{ unit }} of {{ product }}. Set up the run and take what it needs from stock.",
            ],
            ask=ask,
            product=prod["name"],
            unit=self.voc["unit_word"],
        )
        return _mark(
            candidate(
                NAME,
                "start_run",
                i,
                level=4 if len(writes) <= 5 else 5,
                prompt=text,
                verifier="check_state",
                params={},
                solution=self.reads(prod) + writes,
                answer="Done.",
                constraints=5,
                distractors=sum(1 for x in self.data["lots"] if x["expires"] < self.p["today"]),
            ),
            binds,
        )

    def start_user(self, rng):
        got = self._run(rng)
        if got is None:
            return None
        prod, ask, units, writes, binds = got
        i, text = phrase(
            rng,
            [
                "Hi, I need a production run started for the {{ line }} line this {{ shift }}. Can you set it up?",
                "Could you open a production run for me and book out the stock? It's for the {{ line }} line, "
                "{{ shift }} shift.",
                "I'd like to get a batch going on the {{ line }} line this {{ shift }}, please.",
            ],
            line=prod["line"],
            shift=rng.choice(["morning", "afternoon", "evening"]),
        )
        instructions = (
            f"You are a shift supervisor at {self.voc['title']}. You want a production run of {prod['name']}: "
            f"{ask} {self.voc['unit_word']}. Say which product and how many only when asked."
        )
        return _mark(
            candidate(
                NAME,
                "start_user",
                i,
                level=4,
                prompt=text,
                verifier="check_state",
                params={},
                solution=self.reads(prod) + writes,
                answer="Done.",
                user_instructions=instructions,
                user_facts=2,
                constraints=5,
            ),
            binds,
        )

    def two_runs(self, rng):
        """Start runs of two products; one of them cannot be built under the rules and must not be started."""
        prods = list(self.finished)
        rng.shuffle(prods)
        for a, b in itertools.combinations(prods, 2):
            ua = max(a["min_batch"], rng.randint(2, a["min_batch"] + 6))
            ub = max(b["min_batch"], rng.randint(2, b["min_batch"] + 6))
            w = self.works()
            wa = self.run_writes(w, a, ua)
            wb = self.run_writes(w, b, ub) if wa is not None else None
            if wa is None:
                continue
            if wb is None:
                # b cannot run after a: fine if b alone could not run either, or the order was given (a first)
                binds = True
            else:
                binds = False
                if rng.random() < 0.5:
                    continue
            writes = wa + (wb or [])
            i, text = phrase(
                rng,
                [
                    "Please start two runs, in this order: {{ ua }} {{ unit }} of {{ a }}, then {{ ub }} of {{ b }}. If the second "
                    "can't be done by the rules, leave it.",
                    "First set up {{ ua }} {{ unit }} of {{ a }}, then {{ ub }} {{ unit }} of {{ b }}; skip whichever the stock or the rules "
                    "won't allow.",
                    "Run {{ ua }} {{ unit }} of {{ a }} and after that {{ ub }} of {{ b }}. Book out the stock for each run you "
                    "can start; don't start one that breaks the policy.",
                ],
                ua=ua,
                ub=ub,
                a=a["name"],
                b=b["name"],
                unit=self.voc["unit_word"],
            )
            return _mark(
                candidate(
                    NAME,
                    "two_runs",
                    i,
                    level=5,
                    prompt=text,
                    verifier="check_state",
                    params={},
                    solution=self.reads(a) + self.reads(b)[1:] + writes,
                    answer="Done.",
                    constraints=6,
                    distractors=1,
                ),
                binds,
            )
        return None

    def plan_line(self, rng):
        """Planning: runs of the line's products reaching a total, each at least its minimum batch, that fit the
        stock together without substitutes."""
        for _ in range(6):
            made = self._plan_line(rng)
            if made is not None:
                return made
        return None

    def _plan_line(self, rng):
        line = rng.choice(sorted({x["line"] for x in self.finished}))
        prods = [x for x in self.finished if x["line"] == line]
        if len(prods) < 2:
            return None
        prods = rng.sample(prods, min(3, len(prods)))
        # The lots do not change while a plan is sought: each component's stock is read once.
        stock = {c: self.w.stock(c) for x in prods for c in self.w.raw(x["id"])}
        ranges = []
        for x in prods:
            top = 0
            while top < 400 and self.w.fits({x["id"]: top + 1}, stock):
                top += 1
            ranges.append([0] + list(range(x["min_batch"], top + 1)))
        best = 0
        feasible = []
        for combo in itertools.product(*ranges):
            runs = {x["id"]: u for x, u in zip(prods, combo, strict=True) if u}
            if runs and self.w.fits(runs, stock):
                feasible.append((sum(combo), combo))
                best = max(best, sum(combo))
            if len(feasible) > 200000:
                return None
        single = max((max(r) for r in ranges), default=0)
        # the target: reachable, and beyond what the best single product gives, so the plan must mix
        target = best - rng.randint(0, max(0, (best - single) // 3))
        if target <= single or target < 4:
            return None
        plans = [c for s, c in feasible if s >= target]
        if len(plans) < 2:
            return None
        plan = plans[rng.randrange(len(plans))]
        names = [x["name"] for x in prods]
        i, text = phrase(
            rng,
            [
                "Plan this week's production for {{ names }}: at least {{ target }} {{ unit }} in total, each product "
                "either not made or made in at least its minimum batch, all from current stock with no "
                "substitutes. Create the production orders but don't issue any stock yet.",
                "I need {{ target }} or more {{ unit }} across {{ names }}, without substitutes and within the stock "
                "we hold. Open production orders for the mix you choose (minimum batches apply); leave the stock "
                "where it is for now.",
                "Set up production orders for {{ names }} that add up to at least {{ target }} {{ unit }}. Use only "
                "what's in stock, no substitutions, respect minimum batches, and don't book out components yet.",
            ],
            names=", ".join(names[:-1]) + " and " + names[-1],
            target=target,
            unit=self.voc["unit_word"],
        )
        db = sqlite3.connect(self.env_dir / "state" / "db.sqlite")
        orders_before, used_before = plan_counts(db)
        db.close()
        sol = [call("list_products"), call("component_stock")]
        sol += [call("get_bom", product_id=x["id"]) for x in prods]
        sol += [
            call("create_production_order", product_id=x["id"], quantity=u)
            for x, u in zip(prods, plan, strict=True)
            if u
        ]
        return _mark(
            candidate(
                NAME,
                "plan_line",
                i,
                level=5,
                prompt=text,
                verifier="check_plan",
                params={
                    "products": [x["id"] for x in prods],
                    "target": target,
                    "orders_before": orders_before,
                    "used_before": used_before,
                },
                solution=sol,
                answer="Done.",
                constraints=5,
                distractors=len(self.finished) - len(prods),
            ),
            True,
        )


def _mark(cand, binds: bool):
    """A write task, marked with whether a rule changes its right action (the shape's tests count them)."""
    cand.extra["binds"] = bool(binds)
    return cand


SHAPE = RecipesBom()
