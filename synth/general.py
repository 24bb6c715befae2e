"""The general family: ONE engine that renders any domain of `domains.py` into an environment folder, one
variant per (domain, variant index): the tool set's shape and names, the rules in force and the data differ.

Tasks come from jinja2 prompt templates over the environment's own data on a difficulty ladder (1 lookup,
2 filtered aggregate, 3 multi-hop join, 4 constrained write); each carries tool-only reference calls.
`GeneralFamily` is the `Family` the pipeline runs; the module's functions are the engine it uses.
"""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from functools import cache
from pathlib import Path

from toolgym.envs.spec import ToolCall

from .domains import DOMAINS
from .family import Candidate, Family, Key, asked, jinja, render_prompt

LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR"]
NAMING = ["plain", "verbose", "short"]
ADJ = [
    "Blue",
    "Royal",
    "Quiet",
    "Golden",
    "Swift",
    "Grand",
    "Little",
    "North",
    "Silver",
    "Green",
    "Amber",
    "Urban",
]
NOUN = [
    "Harbor",
    "Summit",
    "Garden",
    "River",
    "Falcon",
    "Meadow",
    "Beacon",
    "Orchard",
    "Canyon",
    "Lantern",
    "Willow",
]
PROMPTS = {
    "lookup": [
        'What is the price of the {{ item }} named "{{ name }}"? Answer with the number.',
        'Could you tell me how much the {{ item }} "{{ name }}" costs?',
    ],
    "count": [
        "How many {{ item }}s in the {{ category }} category cost more than {{ price }}?",
        "Count the {{ category }} {{ item }}s priced above {{ price }}.",
    ],
    "cheapest": [
        "Which {{ category }} {{ item }} is the cheapest? Give its name.",
    ],
    "join": [
        "I'm {{ email }}. What is the total of all my {{ status }} {{ record }}s?",
        "My email is {{ email }}. Add up the totals of my {{ status }} {{ record }}s for me.",
    ],
    "cancel": [
        "I'm {{ email }}. Please cancel my {{ status }} {{ record }} {{ rid }}.",
    ],
    "quote": [
        'I\'m {{ email }}. What would {{ qty }} x "{{ name }}" cost me in total, with every rule that applies to me? '
        "Answer with the number.",
        'This is {{ email }}: how much would I pay to {{ verb }} {{ qty }} of "{{ name }}"? Just the amount, please.',
    ],
    "create": [
        "I'm {{ email }}. I'd like to {{ verb }} {{ qty }} x \"{{ name }}\", please.",
        'Hello, this is {{ email }}: please {{ verb }} "{{ name }}" for me, quantity {{ qty }}.',
    ],
}
LEVEL = {"lookup": 1, "count": 2, "cheapest": 2, "join": 3, "quote": 3, "cancel": 4, "create": 4}


@cache
def _faker(locale: str):
    from faker import Faker

    return Faker(locale)


def tool_names(d: dict, naming: str) -> dict:
    a, i, r = d["actor"], d["item"], d["record"]
    if naming == "verbose":
        return {
            "find_actor": f"find_{a}_by_email",
            "list_items": f"browse_{i}_catalog",
            "get_item": f"get_{i}_details",
            "list_records": f"list_{a}_{r}s",
            "create": d["create"],
            "cancel": f"cancel_{r}",
            "submit": "submit_answer",
        }
    if naming == "short":
        return {
            "find_actor": f"{a}_lookup",
            "list_items": f"{i}s",
            "get_item": f"{i}_info",
            "list_records": f"{r}s_of_{a}",
            "create": d["create"],
            "cancel": f"{r}_cancel",
            "submit": "answer",
        }
    return {
        "find_actor": f"find_{a}",
        "list_items": f"list_{i}s",
        "get_item": f"get_{i}",
        "list_records": f"list_{r}s",
        "create": d["create"],
        "cancel": f"cancel_{r}",
        "submit": "submit_answer",
    }


def price_of(cfg: dict, tier: str, unit_price: float, quantity: int) -> float:
    """What a new record costs under the variant's pricing rules: the gold discount, then the bulk discount,
    then the fixed fee. The tools template applies the same formula; seed data and quote tasks use this one."""
    total = unit_price * quantity
    if tier == "gold" and cfg["discount"]:
        total *= 1 - cfg["discount"] / 100
    if cfg["bulk_min"] and quantity >= cfg["bulk_min"]:
        total *= 1 - cfg["bulk_pct"] / 100
    return round(total + cfg["fee"], 2)


def make_state(path: Path, d: dict, cfg: dict, seed: int) -> None:
    rng = random.Random(f"{seed}:{d['name']}:data:{cfg['n_items']}")
    fake = _faker(cfg["locale"])
    fake.seed_instance(rng.randrange(2**31))
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE actors (id TEXT PRIMARY KEY, name TEXT, email TEXT UNIQUE, tier TEXT);"
        "CREATE TABLE items (id TEXT PRIMARY KEY, name TEXT UNIQUE, category TEXT, price REAL, stock INTEGER);"
        "CREATE TABLE records (id TEXT PRIMARY KEY, actor_id TEXT, item_id TEXT, quantity INTEGER, total REAL,"
        " status TEXT);"
    )
    names = set()
    items = []
    while len(items) < cfg["n_items"]:
        name = f"{rng.choice(ADJ)} {rng.choice(NOUN)} {rng.randint(1, 99)}"
        if name in names:
            continue
        names.add(name)
        price = round(rng.uniform(0.1, 1.0) * cfg["price_scale"], 2)
        items.append((f"I{len(items) + 1:03d}", name, rng.choice(d["categories"]), price, rng.randint(0, 12)))
    db.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?)", items)
    emails = set()
    actors = []
    while len(actors) < cfg["n_actors"]:
        first, last = fake.first_name(), fake.last_name()
        email = f"{first}.{last}{rng.randint(1, 99)}@example.com".lower().replace(" ", "")
        if email in emails:
            continue
        emails.add(email)
        actors.append(
            (
                f"A{len(actors) + 1:03d}",
                f"{first} {last}",
                email,
                rng.choice(["standard", "standard", "gold"]),
            )
        )
    db.executemany("INSERT INTO actors VALUES (?, ?, ?, ?)", actors)
    records = []
    for a in actors:
        for _ in range(rng.randint(0, 4)):
            it = rng.choice(items)
            qty = rng.randint(1, 3)
            status = rng.choice(d["statuses"])
            records.append(
                (f"R{len(records) + 1:04d}", a[0], it[0], qty, price_of(cfg, a[3], it[3], qty), status)
            )
    db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", records)
    db.commit()
    db.close()


# -- tasks ---------------------------------------------------------------------------------------------------
def _load(env_dir: Path) -> dict:
    db = sqlite3.connect(Path(env_dir) / "state" / "db.sqlite")
    db.row_factory = sqlite3.Row
    data = {
        t: [dict(r) for r in db.execute(f"SELECT * FROM {t} ORDER BY id")]
        for t in ("actors", "items", "records")
    }
    db.close()
    return data


def _list_calls(n: dict, cfg: dict, data: dict, category: str | None) -> list[ToolCall]:
    """The listing calls that show every item (of a category): every page when the variant paginates."""
    args = {"category": category} if category else {}
    if not cfg["paginated"]:
        return [ToolCall(name=n["list_items"], arguments=args)]
    count = sum(1 for i in data["items"] if category is None or i["category"] == category)
    pages = max(1, -(-count // cfg["page_size"]))
    return [ToolCall(name=n["list_items"], arguments={**args, "page": p}) for p in range(1, pages + 1)]


class GeneralFamily(Family):
    """Every domain of `domains.py`, in variants of tool shape, rules and data."""

    NAME = "general"
    CATEGORY = "general"
    VERSION = "3"
    SCALES = {"tiny": (62, 10), "demo": (31, 10), "small": (124, 14), "full": (1860, 42)}
    """scale -> (environments, candidate tasks per environment): every domain once (tiny), every other domain
    once (demo), two variants of every domain (small), 30 variants of every domain (full)."""

    def plan(self, scale: str) -> list[Key]:
        """(domain, variant index) for every environment of the scale, in a fixed order."""
        if scale == "demo":
            return [(d["name"], 0) for d in DOMAINS[::2]]
        per_domain = self.SCALES[scale][0] // len(DOMAINS)
        return [(d["name"], v) for d in DOMAINS for v in range(per_domain)]

    def domain(self, key: Key) -> str:
        return key[0]

    def env_id(self, key: Key) -> str:
        return f"gen_{key[0]}_v{key[1]:03d}"

    def variant_config(self, key: Key, seed: int) -> dict:
        """Everything a variant fixes, from (seed, domain, v) alone: tool shape, rules and data parameters."""
        domain, v = key
        rng = random.Random(f"{seed}:{domain}:{v}")
        return {
            "naming": NAMING[v % 3],
            "paginated": (v // 3) % 2 == 1,
            "page_size": rng.choice([5, 8, 10]),
            "max_quantity": rng.choice([3, 4, 5]),
            "max_open": rng.choice([3, 4, 6]),
            "discount": rng.choice([0, 5, 10, 15]),
            "locale": LOCALES[(v // 6 + rng.randrange(len(LOCALES))) % len(LOCALES)],
            "n_actors": rng.randint(12, 40),
            "n_items": rng.randint(14, 40),
            "price_scale": rng.choice([20, 60, 150, 400]),
            # Pricing rules beyond the gold discount, present in some variants only (0: no such rule).
            "bulk_min": rng.choice([0, 0, 3, 4]),
            "bulk_pct": rng.choice([5, 10, 20]),
            "fee": rng.choice([0, 0, 1.5, 2.5, 4]),
        }

    def build_env(self, store: Path, key: Key, seed: int) -> Path:
        """Write `<store>/<env_id>/` for one variant, deterministically."""
        domain, v = key
        d = next(x for x in DOMAINS if x["name"] == domain)
        cfg = self.variant_config(key, seed)
        eid = self.env_id(key)
        out = Path(store) / eid
        (out / "state").mkdir(parents=True, exist_ok=True)
        rules = [
            f"only {d['statuses'][0]} {d['record']}s can be cancelled",
            f"at most {cfg['max_open']} {d['statuses'][0]} {d['record']}s per {d['actor']}",
            f"quantity 1 to {cfg['max_quantity']} and within the {d['stock_word']}",
        ]
        if cfg["discount"]:
            rules.append(f"gold {d['actor']}s get {cfg['discount']}% off")
        if cfg["bulk_min"]:
            rules.append(f"{d['record']}s of {cfg['bulk_min']} or more get a further {cfg['bulk_pct']}% off")
        if cfg["fee"]:
            rules.append(f"every {d['record']} carries a fixed fee of {cfg['fee']:.2f}, added last")
        ctx = {
            "d": d,
            "variant": v,
            "n": tool_names(d, cfg["naming"]),
            "rules_text": "; ".join(rules) + ".",
            **cfg,
        }
        (out / "tools.py").write_text(jinja().get_template("general/tools.py.j2").render(**ctx))
        (out / "verify.py").write_text(jinja().get_template("general/verify.py.j2").render(**ctx))
        db_path = out / "state" / "db.sqlite"
        if db_path.exists():
            db_path.unlink()
        make_state(db_path, d, cfg, seed + v)
        description = (
            f"You are the assistant of a {d['title'].lower()} service. Use the tools to look things up and to "
            f"make changes for the user. Rules: {'; '.join(rules)}. Answer questions with the submit tool; after "
            "a change, reply to the user without a tool call."
        )
        return self.write_spec(out, key, seed, description)

    def make_tasks(self, env_dir: Path, key: Key, seed: int, n_tasks: int) -> list[Candidate]:
        """Candidates over the environment's own data, the kinds taken in turn; the guess is the commonest answer
        of the same template among the other candidates."""
        domain, v = key
        d = next(x for x in DOMAINS if x["name"] == domain)
        cfg = self.variant_config(key, seed)
        n = tool_names(d, cfg["naming"])
        data = _load(env_dir)
        items, actors, records = data["items"], data["actors"], data["records"]
        open_status = d["statuses"][0]
        kinds = list(PROMPTS)
        out = []
        for k in range(n_tasks * 4):
            if len(out) == n_tasks:
                break
            rng = random.Random(f"{seed}:{domain}:{v}:task:{k}")
            kind = kinds[k % len(kinds)]
            t_index = rng.randrange(len(PROMPTS[kind]))
            slots = {"item": d["item"], "record": d["record"], "verb": d["verb"]}
            sub = n["submit"]
            if kind == "lookup":
                it = rng.choice(items)
                slots.update(name=it["name"])
                calls = _list_calls(n, cfg, data, None) + [
                    ToolCall(name=n["get_item"], arguments={f"{d['item']}_id": it["id"]})
                ]
                expected, verifier, must = f"{it['price']:.2f}", "check_answer", [n["get_item"]]
            elif kind in ("count", "cheapest"):
                cat = rng.choice(d["categories"])
                pool = [i for i in items if i["category"] == cat]
                if not pool:
                    continue
                calls = _list_calls(n, cfg, data, cat)
                if kind == "count":
                    price = round(rng.choice(pool)["price"] * rng.uniform(0.6, 1.0), 0)
                    slots.update(category=cat, price=f"{price:g}")
                    expected = str(sum(1 for i in pool if i["price"] > price))
                else:
                    slots.update(category=cat)
                    best = sorted(pool, key=lambda i: (i["price"], i["id"]))
                    if len(best) > 1 and best[0]["price"] == best[1]["price"]:
                        continue
                    expected = best[0]["name"]
                verifier, must = "check_answer", [n["list_items"]]
            elif kind == "join":
                a = rng.choice(actors)
                status = rng.choice(d["statuses"])
                mine = [r for r in records if r["actor_id"] == a["id"] and r["status"] == status]
                if not mine:
                    continue
                slots.update(email=a["email"], status=status)
                calls = [
                    ToolCall(name=n["find_actor"], arguments={"email": a["email"]}),
                    ToolCall(
                        name=n["list_records"], arguments={f"{d['actor']}_id": a["id"], "status": status}
                    ),
                ]
                expected = f"{round(sum(r['total'] for r in mine), 2):.2f}"
                verifier, must = "check_answer", [n["list_records"]]
            elif kind == "quote":  # the answer depends on the variant's pricing rules and the actor's tier
                a = rng.choice(actors)
                it = rng.choice(items)
                qty = rng.randint(1, cfg["max_quantity"])
                slots.update(email=a["email"], qty=qty, name=it["name"])
                calls = [ToolCall(name=n["find_actor"], arguments={"email": a["email"]})]
                calls += _list_calls(n, cfg, data, it["category"])
                expected = f"{price_of(cfg, a['tier'], it['price'], qty):.2f}"
                verifier, must = "check_answer", [n["find_actor"], n["list_items"]]
            elif kind == "cancel":
                opens = [r for r in records if r["status"] == open_status]
                if not opens:
                    continue
                r = rng.choice(opens)
                a = next(x for x in actors if x["id"] == r["actor_id"])
                slots.update(email=a["email"], status=open_status, rid=r["id"])
                calls = [
                    ToolCall(name=n["find_actor"], arguments={"email": a["email"]}),
                    ToolCall(
                        name=n["list_records"], arguments={f"{d['actor']}_id": a["id"], "status": open_status}
                    ),
                    ToolCall(name=n["cancel"], arguments={f"{d['record']}_id": r["id"]}),
                ]
                expected, verifier, must = None, "check_state", [n["cancel"]]
            else:  # create: respects stock, quantity and the open limit, as the tool's rules do
                a = rng.choice(actors)
                n_open = sum(1 for r in records if r["actor_id"] == a["id"] and r["status"] == open_status)
                qty = rng.randint(1, cfg["max_quantity"])
                ok_items = [i for i in items if i["stock"] >= qty]
                if n_open >= cfg["max_open"] or not ok_items:
                    continue
                it = rng.choice(ok_items)
                slots.update(email=a["email"], qty=qty, name=it["name"])
                calls = [ToolCall(name=n["find_actor"], arguments={"email": a["email"]})]
                calls += _list_calls(n, cfg, data, it["category"])
                calls.append(
                    ToolCall(
                        name=n["create"],
                        arguments={f"{d['actor']}_id": a["id"], f"{d['item']}_id": it["id"], "quantity": qty},
                    )
                )
                expected, verifier, must = None, "check_state", [n["create"]]
            if expected is not None:
                calls.append(ToolCall(name=sub, arguments={"answer": expected}))
            prompt = [render_prompt(PROMPTS[kind][t_index], **slots)]
            if asked(out, prompt):  # the same question again: draw another
                continue
            out.append(
                self.candidate(
                    kind,
                    t_index,
                    difficulty=LEVEL[kind] + (len(calls) > 4),
                    prompt=prompt,
                    verifier=verifier,
                    params={"expected": expected, "must_call": must}
                    if expected is not None
                    else {"must_call": must},
                    solution=calls,
                    answer=None if expected is not None else "Done: your request is complete.",
                )
            )
        # The guess policy answers the commonest answer of the same template among the environment's OTHER tasks
        # (leave-one-out, so it never peeks at the task's own answer); a task it gets right is too guessable.
        common: dict[str, Counter] = {}
        for c in out:
            if c.params.get("expected") is not None:
                common.setdefault(c.template, Counter())[c.params["expected"]] += 1
        for c in out:
            others = Counter(common.get(c.template, Counter()))
            if c.params.get("expected") is not None:
                others[c.params["expected"]] -= 1
            ranked = sorted((-n, answer) for answer, n in others.items() if n > 0)
            c.guess = ranked[0][1] if ranked else "0"
        return out


FAMILY = GeneralFamily()
