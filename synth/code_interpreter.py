"""The code-interpreter family: data-analysis and maths environments around the reference environment's stateful
Python session (envs/reference/code_interpreter), one variant per (theme, variant index).

A theme (`THEMES`, data only: sales, weather stations, sensor logs, ...) names a fact table with a date, two
category columns and two measures, and a lookup file keyed by the first category. A variant fixes, from
(seed, theme, index):

* the tool set: the Python tool's name (its code is the reference tools.py's, rendered into the template), an
  optional file-listing tool and an optional `head` preview tool with its own names and parameters;
* the rules: how non-integer answers are rounded and where the final number must stand (\\boxed{}, an
  `ANSWER:` line or <answer> tags; verify.py wraps the reference `check_number` accordingly);
* the data: CSV or JSON Lines, delimiter and decimal comma, date format, one file or one per year, 200 to 3000
  rows, sorted or not, and "dirty" variants with missing values, duplicated records and untidy labels.

Tasks are questions whose reference solution is Python cells (the last expression is the answer); the builder
computes the expected number by running the same code with the reference builder's `run_reference` in a
scratch copy of state/. Ladder: 1 a single aggregate or small maths, 2 a filtered group-by or a DP, 3 a join
with the lookup file or several conditions, 4 two cells (load and clean, then a multi-step computation), 5 a
harder algorithm (streaks, sliding windows, fast doubling, digit DP, ...).
"""

from __future__ import annotations

import calendar
import csv
import io
import json
import random
import shutil
import tempfile
from datetime import date, datetime, timedelta
from itertools import zip_longest
from pathlib import Path

from toolgym.envs.schema import load_tools_module, tools_from_module
from toolgym.envs.spec import EnvLimits, EnvSpec, Provenance, ToolCall, write_env_spec
from toolgym.synth.reference.code_interpreter.build import run_reference

from .family import jinja

NAME = "code_interpreter"
CATEGORY = "code_interpreter"
VERSION = "1"
SCALES = {"tiny": (2, 6), "demo": (5, 12), "small": (10, 20), "full": (80, 38)}
"""scale -> (environments, candidate tasks per environment): 20 themes x 4 variants at full scale. 38 candidates
ask each of the 38-39 question kinds about once per environment; almost none is dropped, so about 3,000 tasks
are kept, and validation (one REPL process per episode that runs code) stays near 150 s with 2 workers."""
VARIANTS_PER_THEME = 4
LIMITS = EnvLimits(call_timeout_s=130.0, max_result_chars=30000, max_steps=30)  # the reference env's


# -- themes (data only) -----------------------------------------------------------------------------------------
def _theme(name, title, file, row, rows, id_col, c1, c2, m1, m2, lookup) -> dict:
    """c1/c2: (column, label, values); m1 (summed) / m2 (averaged): (column, label, low, high, decimals; 0 is
    an integer); lookup: (file stem, attribute column, its values, number column, its label)."""
    return {
        "name": name,
        "title": title,
        "file": file,
        "row": row,
        "rows": rows,
        "id": id_col,
        "c1": dict(zip(("col", "label", "values"), c1, strict=True)),
        "c2": dict(zip(("col", "label", "values"), c2, strict=True)),
        "m1": dict(zip(("col", "label", "lo", "hi", "dec"), m1, strict=True)),
        "m2": dict(zip(("col", "label", "lo", "hi", "dec"), m2, strict=True)),
        "lookup": dict(zip(("file", "attr", "attr_values", "num", "num_label"), lookup, strict=True)),
    }


THEMES: list[dict] = [
    _theme(
        "sales", "a retail chain's sales team", "sales", "sale", "sales", "sale_id",
        ("region", "region", ["north", "south", "east", "west", "central"]),
        ("product", "product", ["widget", "gadget", "gizmo", "sprocket", "doohickey"]),
        ("units", "units sold", 1, 40, 0), ("unit_price", "unit price", 2.0, 90.0, 2),
        ("regions", "division", ["retail", "wholesale"], "unit_target", "annual unit target"),
    ),
    _theme(
        "weather", "a network of weather stations", "readings", "reading", "readings", "reading_id",
        ("station", "station", ["harbor", "ridge", "valley", "airport", "summit", "marsh"]),
        ("sky", "sky condition", ["clear", "cloudy", "rain", "fog", "snow"]),
        ("precip_mm", "precipitation in mm", 0.0, 40.0, 1), ("temp_c", "temperature in degrees C", -8.0, 34.0, 1),
        ("stations", "zone", ["coastal", "inland", "alpine"], "rain_norm_mm", "annual precipitation norm in mm"),
    ),
    _theme(
        "sensors", "a factory's sensor logs", "sensor_log", "log entry", "log entries", "entry_id",
        ("sensor", "sensor", ["s01", "s02", "s03", "s04", "s05", "s06", "s07"]),
        ("status", "status", ["ok", "warn", "fault"]),
        ("events", "event count", 0, 25, 0), ("voltage", "voltage", 3.0, 5.5, 3),
        ("sensors", "site", ["plant_a", "plant_b", "lab"], "event_budget", "yearly event budget"),
    ),
    _theme(
        "exams", "a school district's exam office", "exam_results", "exam result", "exam results", "result_id",
        ("school", "school", ["northfield", "lakeside", "hillcrest", "riverside", "oakwood"]),
        ("subject", "subject", ["math", "physics", "chemistry", "biology", "history"]),
        ("points", "points scored", 0, 100, 0), ("minutes", "time taken in minutes", 20, 120, 0),
        ("schools", "sector", ["public", "private"], "points_goal", "yearly points goal"),
    ),
    _theme(
        "flights", "an airport operations team", "flights", "flight", "flights", "flight_id",
        ("airline", "airline", ["aerolux", "skyway", "bluejet", "nordair", "sunwing"]),
        ("origin", "origin airport", ["ams", "cdg", "fra", "lhr", "mad"]),
        ("passengers", "passengers", 40, 320, 0), ("delay_min", "departure delay in minutes", 0.0, 180.0, 1),
        ("airlines", "alliance", ["star", "oneworld", "none"], "passenger_goal", "annual passenger goal"),
    ),
    _theme(
        "energy", "a campus energy office", "meter_readings", "meter reading", "meter readings", "reading_id",
        ("building", "building", ["atrium", "depot", "lab", "library", "tower", "warehouse"]),
        ("tariff", "tariff", ["peak", "offpeak", "shoulder"]),
        ("kwh", "energy use in kWh", 0.5, 60.0, 2), ("power_factor", "power factor", 0.7, 1.0, 3),
        ("buildings", "usage", ["office", "industrial", "public"], "kwh_budget", "annual kWh budget"),
    ),
    _theme(
        "hospital", "a hospital's admissions office", "admissions", "admission", "admissions", "admission_id",
        ("ward", "ward", ["cardiology", "oncology", "pediatrics", "orthopedics", "neurology", "maternity"]),
        ("admission_type", "admission type", ["emergency", "elective", "transfer"]),
        ("stay_days", "bed days", 1, 30, 0), ("age", "patient age", 0, 95, 0),
        ("wards", "building", ["east_wing", "west_wing"], "bed_day_capacity", "annual bed-day capacity"),
    ),
    _theme(
        "web_traffic", "a company website's analytics team", "pageviews", "traffic record", "traffic records",
        "record_id",
        ("page", "page", ["home", "blog", "pricing", "docs", "careers", "support"]),
        ("device", "device", ["desktop", "mobile", "tablet"]),
        ("visits", "visits", 1, 500, 0), ("load_ms", "page load time in ms", 120, 3000, 0),
        ("pages", "team", ["marketing", "product", "hr"], "visit_goal", "annual visit goal"),
    ),
    _theme(
        "sports", "a football league's statistics desk", "matches", "match result", "match results", "match_id",
        ("team", "team", ["falcons", "rovers", "united", "athletic", "wanderers", "city"]),
        ("venue", "venue", ["home", "away", "neutral"]),
        ("goals", "goals scored", 0, 6, 0), ("attendance", "attendance", 800, 52000, 0),
        ("teams", "division", ["east", "west"], "goal_target", "season goal target"),
    ),
    _theme(
        "library", "a city library service", "circulation", "circulation record", "circulation records",
        "record_id",
        ("branch", "branch", ["central", "eastside", "harbor", "northgate", "westend"]),
        ("genre", "genre", ["fiction", "history", "science", "children", "poetry"]),
        ("loans", "loans", 1, 30, 0), ("loan_days", "loan length in days", 1.0, 28.0, 1),
        ("branches", "district", ["inner", "outer"], "loan_target", "annual loan target"),
    ),
    _theme(
        "taxi", "a taxi company's dispatch office", "trips", "trip", "trips", "trip_id",
        ("zone", "pickup zone", ["downtown", "airport", "midtown", "harbor", "uptown", "suburbs"]),
        ("payment", "payment method", ["card", "cash", "app"]),
        ("fare", "fare", 3.5, 85.0, 2), ("distance_km", "distance in km", 0.5, 32.0, 2),
        ("zones", "borough", ["north", "south", "central"], "fare_target", "annual fare target"),
    ),
    _theme(
        "stocks", "a brokerage's trading desk", "trades", "trade", "trades", "trade_id",
        ("ticker", "ticker", ["acme", "bolt", "cyan", "dyna", "echo", "flux"]),
        ("side", "side", ["buy", "sell"]),
        ("volume", "shares traded", 100, 50000, 0), ("price", "price", 10.0, 480.0, 2),
        ("tickers", "sector", ["tech", "energy", "retail"], "volume_target", "annual volume target"),
    ),
    _theme(
        "crops", "a farming cooperative", "harvests", "harvest record", "harvest records", "harvest_id",
        ("farm", "farm", ["brookfield", "elmstead", "greenacre", "millbrook", "stonefield"]),
        ("crop", "crop", ["wheat", "maize", "barley", "soy", "oats"]),
        ("yield_t", "yield in tonnes", 0.5, 12.0, 2), ("moisture_pct", "grain moisture in %", 8.0, 35.0, 1),
        ("farms", "soil", ["clay", "loam", "sand"], "quota_t", "yearly quota in tonnes"),
    ),
    _theme(
        "shipments", "a parcel logistics company", "shipments", "shipment", "shipments", "shipment_id",
        ("warehouse", "warehouse", ["berlin", "dublin", "lyon", "milan", "porto"]),
        ("carrier", "carrier", ["dhl", "ups", "fedex", "gls"]),
        ("parcels", "parcels", 1, 80, 0), ("cost", "shipping cost", 4.0, 250.0, 2),
        ("warehouses", "network", ["north", "south"], "parcel_capacity", "annual parcel capacity"),
    ),
    _theme(
        "bike_share", "a city bike-share scheme", "rentals", "rental", "rentals", "rental_id",
        ("station", "station", ["canal", "market", "museum", "park", "terminal", "university"]),
        ("bike", "bike type", ["classic", "electric", "cargo"]),
        ("minutes", "ride minutes", 2, 120, 0), ("rider_age", "rider age", 16, 75, 0),
        ("stations", "district", ["old_town", "new_town"], "minute_goal", "annual ride-minute goal"),
    ),
    _theme(
        "restaurant", "a restaurant group", "orders", "order", "orders", "order_id",
        ("outlet", "outlet", ["bistro", "cantina", "diner", "grill", "trattoria"]),
        ("channel", "channel", ["dine_in", "takeaway", "delivery"]),
        ("amount", "bill amount", 6.0, 180.0, 2), ("tip_pct", "tip in %", 0.0, 25.0, 1),
        ("outlets", "cuisine", ["european", "latin", "american"], "revenue_goal", "annual revenue goal"),
    ),
    _theme(
        "call_center", "a customer call center", "calls", "call", "calls", "call_id",
        ("queue", "queue", ["billing", "technical", "sales", "returns", "accounts"]),
        ("channel", "channel", ["phone", "chat", "email"]),
        ("handle_min", "handling time in minutes", 0.5, 45.0, 1), ("csat", "satisfaction score", 1, 5, 0),
        ("queues", "site", ["lisbon", "manila", "dallas"], "minutes_budget", "annual minutes budget"),
    ),
    _theme(
        "air_quality", "a city's air-quality monitoring unit", "air_quality", "measurement", "measurements",
        "measurement_id",
        ("site", "site", ["bridge", "center", "harbor", "park", "school", "station"]),
        ("traffic", "traffic level", ["low", "medium", "high"]),
        ("vehicles", "vehicle count", 0, 900, 0), ("pm25", "PM2.5 in ug/m3", 2.0, 150.0, 1),
        ("sites", "area", ["urban", "suburban", "rural"], "vehicle_limit", "annual vehicle limit"),
    ),
    _theme(
        "gym", "a chain of fitness clubs", "class_attendance", "class session", "class sessions", "session_id",
        ("club", "club", ["downtown", "riverside", "westpark", "northside", "lakeview"]),
        ("class_type", "class type", ["yoga", "spin", "hiit", "pilates", "boxing"]),
        ("attendees", "attendees", 1, 30, 0), ("rating", "instructor rating", 1.0, 5.0, 1),
        ("clubs", "city", ["aston", "bexley", "carlow"], "attendance_goal", "annual attendance goal"),
    ),
    _theme(
        "ev_charging", "an EV charging network", "charging_sessions", "charging session", "charging sessions",
        "session_id",
        ("site", "site", ["mall", "depot", "hotel", "office", "terminal", "stadium"]),
        ("connector", "connector", ["ccs", "chademo", "type2"]),
        ("energy_kwh", "energy delivered in kWh", 1.0, 90.0, 2), ("duration_min", "session length in minutes", 5, 240, 0),
        ("sites", "operator", ["voltra", "chargeco"], "kwh_goal", "annual kWh goal"),
    ),
]  # fmt: skip
THEME = {t["name"]: t for t in THEMES}

# -- variation axes --------------------------------------------------------------------------------------------
PYTHON_NAMES = ["python", "run_python", "execute_python", "ipython"]
LIST_NAMES = [None, "list_files", "ls", "list_data_files"]
HEADS = [None, ("head", "path", "n"), ("preview_file", "file", "lines"), ("peek", "filename", "count")]
ANSWER_FORMATS = {
    "boxed": (
        "check_number",
        "give the final answer as a number in \\boxed{} in a reply without a tool call",
    ),
    "answer_line": (
        "check_answer_line",
        "end your final reply (without a tool call) with a line `ANSWER: <number>`",
    ),
    "tag": (
        "check_answer_tag",
        "give the final answer as <answer>NUMBER</answer> in a reply without a tool call",
    ),
}
FORMAT_WHERE = {"answer_line": "on the last 'ANSWER:' line", "tag": "inside <answer>...</answer>"}
DATE_FORMATS = [
    "%Y-%m-%d",
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d.%m.%Y",
    "%Y%m%d",
    "%Y-%m-%dT%H:%M:%S",
    "%d-%b-%Y",
    "%Y/%m/%d %H:%M",
]
DELIMITERS = [",", ";", "\t", "|"]
MISSING_TOKENS = ["", "NA", "null", "-", "n/a"]
MONTHS = list(calendar.month_name)
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MAX_ANSWER = 1e10
"""Answers stay below this so the verifier's relative tolerance (REL_TOL) still tells integers apart."""
REL_TOL = 1e-12
MODULI = [10007, 1_000_003, 998_244_353, 1_000_000_007]
RANDOM_POLICY_ANSWERS = {42.0}
"""Numbers agent.policies.RandomPolicy may end on: a task with that answer could be won by chance."""


# -- plan -------------------------------------------------------------------------------------------------------
def plan(scale: str) -> list[tuple[str, int]]:
    """(theme, variant index) for every environment of the scale, in a fixed order."""
    if scale == "tiny":  # two themes whose variants differ in tool set, rules and data shape
        return [(THEMES[0]["name"], 1), (THEMES[9]["name"], 3)]
    if scale in ("demo", "small"):  # themes spread over the list, every variant shape in turn
        step = len(THEMES) // SCALES[scale][0]
        return [(THEMES[step * i]["name"], i % VARIANTS_PER_THEME) for i in range(SCALES[scale][0])]
    return [(t["name"], v) for t in THEMES for v in range(VARIANTS_PER_THEME)]


def env_id(key: tuple[str, int]) -> str:
    return f"ci_{key[0]}_v{key[1]:03d}"


def domain(key: tuple[str, int]) -> str:
    return key[0]


def variant_config(theme: str, v: int, seed: int) -> dict:
    """Everything a variant fixes. The main axes rotate with v (offset by the theme's index), so the variants
    of one theme each get another Python tool name, rounding rule and file format; the rest is drawn."""
    ti = [t["name"] for t in THEMES].index(theme)
    rng = random.Random(f"{seed}:{theme}:{v}:config")
    main_format = ["csv", "jsonl"][(v + ti) % 2]
    delimiter = rng.choice(DELIMITERS) if main_format == "csv" else ","
    years = 1 + (v // 2 + ti) % 2
    head = HEADS[(v + 2 * ti) % 4]
    return {
        "v": v,
        "python": PYTHON_NAMES[(v + ti) % 4],
        "list_files": LIST_NAMES[(v + ti // 2) % 4],
        "head": head,
        "head_default": rng.choice([5, 10]),
        "answer_format": list(ANSWER_FORMATS)[(v + ti // 3) % 3],
        "decimals": (v + ti // 4) % 4,
        "main_format": main_format,
        "delimiter": delimiter,
        "decimal_comma": delimiter == ";" and rng.random() < 0.7,
        "date_format": rng.choice(DATE_FORMATS),
        "dirty": (v + ti) % 4 in (1, 2),
        "missing": rng.choice(MISSING_TOKENS),
        "years": list(range(2024 - years + 1 - ti % 3, 2024 - ti % 3 + 1)),
        "rows": int(round(200 * 15 ** rng.random())),  # 200..3000, log-uniform: most files stay small
        "shuffled": rng.random() < 0.3,
        "lookup_format": rng.choice(["json", "csv", "jsonl"]),
        "column_order": rng.sample(range(4), 4),
    }


def _main_files(th: dict, cfg: dict) -> list[str]:
    ext = cfg["main_format"]
    if len(cfg["years"]) == 1:
        return [f"{th['file']}.{ext}"]
    return [f"{th['file']}_{y}.{ext}" for y in cfg["years"]]


def _lookup_file(th: dict, cfg: dict) -> str:
    return f"{th['lookup']['file']}.{cfg['lookup_format']}"


def _date_col(cfg: dict) -> str:
    return "timestamp" if "%H" in cfg["date_format"] else "date"


# -- data -------------------------------------------------------------------------------------------------------
def _draw(rng: random.Random, m: dict, scale: float):
    """A skewed value in [lo, hi] (most values low, like counts and amounts); a group's scale shifts it up or
    down without piling values up at the bounds."""
    x = m["lo"] + (m["hi"] - m["lo"]) * rng.betavariate(2 * scale, 4)
    return int(round(x)) if m["dec"] == 0 else round(x, m["dec"])


def make_records(th: dict, cfg: dict, seed: int) -> list[dict]:
    """The clean records (dates as date objects, None where a value is missing), in file order."""
    rng = random.Random(f"{seed}:{th['name']}:{cfg['v']}:data")
    first, last = date(cfg["years"][0], 1, 1), date(cfg["years"][-1], 12, 31)
    span = (last - first).days + 1
    c1, c2 = th["c1"]["values"], th["c2"]["values"]
    weight = [rng.uniform(0.4, 2.0) for _ in c1]  # some groups are busier than others
    s1 = {a: rng.uniform(0.6, 1.5) for a in c1}
    s2 = {b: rng.uniform(0.6, 1.5) for b in c2}
    recs = []
    for _ in range(cfg["rows"]):
        a, b = rng.choices(c1, weight)[0], rng.choice(c2)
        m1, m2 = _draw(rng, th["m1"], s1[a]), _draw(rng, th["m2"], s2[b])
        if cfg["dirty"]:
            m1 = None if rng.random() < 0.03 else m1
            m2 = None if rng.random() < 0.03 else m2
        day = first + timedelta(days=rng.randrange(span))
        clock = (rng.randrange(6, 22), rng.randrange(60), rng.randrange(60))
        recs.append({"date": day, "clock": clock, "c1": a, "c2": b, "m1": m1, "m2": m2})
    recs.sort(key=lambda r: (r["date"], r["clock"]))
    for i, r in enumerate(recs):
        r["id"] = f"{th['id'][0].upper()}{i + 1:05d}"
    if cfg["shuffled"]:
        rng.shuffle(recs)
    return recs


def make_lookup(th: dict, cfg: dict, recs: list[dict], seed: int) -> list[dict]:
    """One entry per first-category value: its attribute (every attribute value used) and a target near its
    total of the last year, so comparing totals with targets splits the groups."""
    rng = random.Random(f"{seed}:{th['name']}:{cfg['v']}:lookup")
    lk = th["lookup"]
    attrs = list(lk["attr_values"]) * len(th["c1"]["values"])
    attrs = attrs[: len(th["c1"]["values"])]
    rng.shuffle(attrs)
    year = cfg["years"][-1]
    out = []
    for a, attr in zip(th["c1"]["values"], attrs, strict=True):
        total = sum(r["m1"] or 0 for r in recs if r["c1"] == a and r["date"].year == year)
        out.append(
            {th["c1"]["col"]: a, lk["attr"]: attr, lk["num"]: int(round(total * rng.uniform(0.8, 1.2)))}
        )
    return out


def _untidy(rng: random.Random, label: str) -> str:
    """A label as careless data entry writes it: other letter case, stray spaces."""
    return rng.choice([label.upper(), label.title(), f" {label}", f"{label} ", f" {label.upper()} "])


def _cells(th: dict, cfg: dict, r: dict, rng: random.Random) -> dict:
    """One record as its file writes it: column -> value (None when missing), in the variant's column order."""
    when = datetime(r["date"].year, r["date"].month, r["date"].day, *r["clock"])
    cells = {
        "c1": _untidy(rng, r["c1"]) if cfg["dirty"] and rng.random() < 0.05 else r["c1"],
        "c2": _untidy(rng, r["c2"]) if cfg["dirty"] and rng.random() < 0.05 else r["c2"],
        "m1": r["m1"],
        "m2": r["m2"],
    }
    order = [("c1", "c2", "m1", "m2")[i] for i in cfg["column_order"]]
    row = {th["id"]: r["id"], _date_col(cfg): when.strftime(cfg["date_format"])}
    for k in order:
        row[th[k]["col"]] = cells[k]
    return row


def _number_text(value, dec: int, cfg: dict) -> str:
    text = str(value) if dec == 0 else f"{value:.{dec}f}"
    return text.replace(".", ",") if cfg["decimal_comma"] else text


def write_state(state: Path, th: dict, cfg: dict, recs: list[dict], lookup: list[dict], seed: int) -> None:
    """The data files: the records (one file, or one per year) with the variant's format and dirt, and the
    lookup file."""
    rng = random.Random(f"{seed}:{th['name']}:{cfg['v']}:files")
    decs = {th["m1"]["col"]: th["m1"]["dec"], th["m2"]["col"]: th["m2"]["dec"]}
    rows = [_cells(th, cfg, r, rng) for r in recs]
    if cfg["dirty"]:  # a few records exported twice, the copy a little later in the file
        for i in sorted(rng.sample(range(len(rows)), max(2, len(rows) // 50)), reverse=True):
            rows.insert(min(len(rows), i + rng.randint(1, 6)), dict(rows[i]))
    for name, year in zip(_main_files(th, cfg), cfg["years"], strict=True):
        part = rows if len(cfg["years"]) == 1 else [r for r in rows if _row_year(r, cfg) == year]
        buf = io.StringIO()
        if cfg["main_format"] == "csv":
            w = csv.writer(buf, delimiter=cfg["delimiter"], lineterminator="\n")
            w.writerow(list(part[0]))
            for r in part:
                w.writerow(
                    [
                        cfg["missing"] if v is None else _number_text(v, decs[k], cfg) if k in decs else v
                        for k, v in r.items()
                    ]
                )
        else:
            for r in part:
                buf.write(json.dumps(_json_row(r, decs, cfg, rng)) + "\n")
        (state / name).write_text(buf.getvalue())
    (state / _lookup_file(th, cfg)).write_text(_lookup_text(lookup, cfg["lookup_format"]))


def _row_year(row: dict, cfg: dict) -> int:
    return datetime.strptime(row[_date_col(cfg)], cfg["date_format"]).year


def _json_row(r: dict, decs: dict, cfg: dict, rng: random.Random) -> dict:
    """A JSON Lines record: a missing value is null or left out; dirty files quote some numbers."""
    out = {}
    for k, v in r.items():
        if v is None:
            if rng.random() < 0.5:
                out[k] = None
        elif k in decs and cfg["dirty"] and rng.random() < 0.05:
            out[k] = str(v)
        else:
            out[k] = v
    return out


def _lookup_text(lookup: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(lookup, indent=2) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(e) + "\n" for e in lookup)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(lookup[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(lookup)
    return buf.getvalue()


# -- the environment --------------------------------------------------------------------------------------------
def _files_text(th: dict, cfg: dict) -> str:
    main = " and ".join(_main_files(th, cfg))
    lk = th["lookup"]
    return (
        f"{main} (one {th['row']} per {'line' if cfg['main_format'] == 'jsonl' else 'row'}) and "
        f"{_lookup_file(th, cfg)} (one entry per {th['c1']['label']}: its {lk['attr']} and {lk['num_label']})"
    )


def _rules(th: dict, cfg: dict) -> list[str]:
    d = cfg["decimals"]
    rules = [
        "give non-integer answers rounded to the nearest whole number"
        if d == 0
        else f"give non-integer answers rounded to {d} decimal place{'s' * (d > 1)}"
    ]
    if cfg["dirty"]:
        rules += [
            f"a {th['row']} listed more than once (the same {th['id']}) counts once",
            "a missing value is left out of the sums, averages, extremes and comparisons of its column",
            "labels may differ in letter case and surrounding spaces and still name the same thing",
        ]
    return rules


def _tool_names(cfg: dict) -> dict:
    head = cfg["head"] or (None, None, None)
    return {
        "python": cfg["python"],
        "list_files": cfg["list_files"],
        "head": head[0],
        "head_path": head[1],
        "head_count": head[2],
    }


def build_env(store: Path, key: tuple[str, int], seed: int) -> Path:
    """Write `<store>/<env_id>/` for one variant, deterministically."""
    theme, v = key
    th, cfg = THEME[theme], variant_config(theme, v, seed)
    out = Path(store) / env_id(key)
    if (out / "state").exists():
        shutil.rmtree(out / "state")
    (out / "state").mkdir(parents=True)
    recs = make_records(th, cfg, seed)
    write_state(out / "state", th, cfg, recs, make_lookup(th, cfg, recs, seed), seed)
    n = _tool_names(cfg)
    fmt = cfg["answer_format"]
    ctx = {
        "title": th["title"][0].upper() + th["title"][1:],
        "about": th["title"],
        "variant": v,
        "n": n,
        "files_text": _files_text(th, cfg),
        "head_default": cfg["head_default"],
        "head_max": 50,
        "head_hint": "list the files to see their names." if n["list_files"] else "the task names the files.",
        "answer_format": fmt,
        "format_where": FORMAT_WHERE.get(fmt, ""),
        "python_tool": repr(n["python"]),
    }
    (out / "tools.py").write_text(jinja().get_template("code_interpreter/tools.py.j2").render(**ctx))
    (out / "verify.py").write_text(jinja().get_template("code_interpreter/verify.py.j2").render(**ctx))
    spec = EnvSpec(
        id=env_id(key),
        category=CATEGORY,
        domain=theme,
        description=(
            f"You are a careful analyst for {th['title']}, with a Python tool (`{n['python']}`) whose session "
            f"keeps its variables between calls and runs in the working folder. The working folder holds "
            f"{_files_text(th, cfg)}. Questions are about this data, or are maths and counting problems. Use code "
            f"for every computation. Rules: {'; '.join(_rules(th, cfg))}. Then {ANSWER_FORMATS[fmt][1]}."
        ),
        tools=tools_from_module(load_tools_module(out / "tools.py")),
        limits=LIMITS,
        provenance=Provenance(producer="template", family=f"{NAME}/{theme}", seed=seed, version=VERSION),
    )
    write_env_spec(out, spec)
    return out


# -- reference code: loading the data ----------------------------------------------------------------------------
def _loader(th: dict, cfg: dict) -> str:
    """Code that reads the variant's files into `rows`: dicts with a `date` (datetime.date), the category labels
    and the measures (None when missing), each record once."""
    is_csv, dirty, fmt = cfg["main_format"] == "csv", cfg["dirty"], cfg["date_format"]
    files = _main_files(th, cfg)
    lines = ["import csv" if is_csv else "import json"]
    lines.append("from datetime import date" if fmt == "%Y-%m-%d" else "from datetime import datetime")
    if dirty:
        tokens = sorted({"", cfg["missing"]}) if is_csv else [""]
        lines += [
            "",
            f"MISSING = {{{', '.join(repr(t) for t in tokens)}}}",
            "",
            "",
            "def number(value):",
            '    """None for a missing value, else the value as a float."""',
            "    if value is None or str(value).strip() in MISSING:",
            "        return None",
            "    return float(str(value).strip()" + (".replace(',', '.'))" if cfg["decimal_comma"] else ")"),
            "",
        ]
    opener = "open(name, newline='', encoding='utf-8')" if is_csv else "open(name, encoding='utf-8')"
    delim = f", delimiter={cfg['delimiter']!r}" if cfg["delimiter"] != "," else ""
    read = f"csv.DictReader(f{delim})" if is_csv else "(json.loads(line) for line in f if line.strip())"
    lines += ["raw = []", f"for name in {files!r}:", f"    with {opener} as f:", f"        raw += {read}"]
    if dirty:
        lines += [
            "rows, seen = [], set()",
            "for r in raw:",
            f"    if r[{th['id']!r}] in seen:",
            "        continue",
        ]
        lines.append(f"    seen.add(r[{th['id']!r}])")
    else:
        lines += ["rows = []", "for r in raw:"]
    lines.append("    rows.append({")
    lines.append(f"        'date': {_date_expr(cfg)},")
    for k in ("c1", "c2"):
        col = th[k]["col"]
        lines.append(f"        {col!r}: r[{col!r}]" + (".strip().lower()," if dirty else ","))
    for k in ("m1", "m2"):
        lines.append(f"        {th[k]['col']!r}: {_number_expr(th[k], cfg)},")
    lines.append("    })")
    return "\n".join(lines)


def _date_expr(cfg: dict) -> str:
    col, fmt = _date_col(cfg), cfg["date_format"]
    if fmt == "%Y-%m-%d":
        return f"date.fromisoformat(r[{col!r}])"
    if fmt == "%Y-%m-%dT%H:%M:%S":
        return f"datetime.fromisoformat(r[{col!r}]).date()"
    return f"datetime.strptime(r[{col!r}], {fmt!r}).date()"


def _number_expr(m: dict, cfg: dict) -> str:
    col = m["col"]
    if cfg["dirty"]:
        return f"number(r.get({col!r}))"
    if cfg["main_format"] == "jsonl":
        return f"r[{col!r}]"
    if cfg["decimal_comma"]:
        return f"float(r[{col!r}].replace(',', '.'))"
    return f"{'int' if m['dec'] == 0 else 'float'}(r[{col!r}])"


def _lookup_loader(th: dict, cfg: dict) -> str:
    """Code that reads the lookup file into `info`: first-category label -> entry."""
    name, key, fmt = _lookup_file(th, cfg), th["c1"]["col"], cfg["lookup_format"]
    if fmt == "csv":
        head = "import csv\n" if cfg["main_format"] != "csv" else ""
        return f"{head}with open({name!r}, newline='', encoding='utf-8') as f:\n    info = {{e[{key!r}]: e for e in csv.DictReader(f)}}"
    head = "import json\n" if cfg["main_format"] != "jsonl" else ""
    load = "json.load(f)" if fmt == "json" else "(json.loads(line) for line in f if line.strip())"
    return f"{head}with open({name!r}, encoding='utf-8') as f:\n    info = {{e[{key!r}]: e for e in {load}}}"


# -- questions --------------------------------------------------------------------------------------------------
class Q:
    """What a question maker sees: the theme, the variant, the clean records and a seeded rng, plus the small
    code-writing helpers every data question shares."""

    def __init__(self, th: dict, cfg: dict, recs: list[dict], rng: random.Random) -> None:
        self.th, self.cfg, self.recs, self.rng = th, cfg, recs, rng
        self.c1, self.c2, self.m1, self.m2 = (th[k]["col"] for k in ("c1", "c2", "m1", "m2"))

    def round(self, expr: str) -> str:
        """The expression rounded by the variant's rule."""
        d = self.cfg["decimals"]
        return f"round({expr})" if d == 0 else f"round({expr}, {d})"

    def total(self, expr: str, m: str = "m1") -> str:
        """A sum of measure `m`: exact for integer measures, rounded by the rule otherwise."""
        return f"int({expr})" if self.th[m]["dec"] == 0 else self.round(expr)

    def present(self, *cols: str) -> list[str]:
        """Conditions that leave out missing values (only dirty variants have them)."""
        return [f"r[{c!r}] is not None" for c in cols] if self.cfg["dirty"] else []

    def slots(self) -> dict:
        th = self.th
        return {
            "row": th["row"],
            "rows": th["rows"],
            "c1": th["c1"]["label"],
            "c2": th["c2"]["label"],
            "m1": th["m1"]["label"],
            "m2": th["m2"]["label"],
            "attr": th["lookup"]["attr"],
            "num_label": th["lookup"]["num_label"],
            "lookup_file": _lookup_file(th, self.cfg),
            "src": " and ".join(
                _main_files(th, self.cfg)
            ),  # names the variant's files: no two envs share a prompt
        }

    def fmt(self, value, m: str) -> str:
        return str(int(value)) if self.th[m]["dec"] == 0 else f"{value:.{self.th[m]['dec']}f}"

    def pick(self, k: str) -> str:
        return self.rng.choice(self.th[k]["values"])

    def year(self) -> int:
        return self.rng.choice(self.cfg["years"])


def _where(conds: list[str]) -> str:
    return f" if {' and '.join(conds)}" if conds else ""


def _d_total(q: Q):
    expr = f"sum(r[{q.m1!r}] for r in rows{_where(q.present(q.m1))})"
    return {}, [q.total(expr)]


def _d_count(q: Q):
    v = q.pick("c1")
    return {"v": v}, [f"sum(1 for r in rows if r[{q.c1!r}] == {v!r})"]


def _d_mean(q: Q):
    w = q.pick("c2")
    conds = [f"r[{q.c2!r}] == {w!r}", *q.present(q.m2)]
    return {"w": w}, [
        f"values = [r[{q.m2!r}] for r in rows{_where(conds)}]\n" + q.round("sum(values) / len(values)")
    ]


def _d_max(q: Q):
    w = q.pick("c2")
    conds = [f"r[{q.c2!r}] == {w!r}", *q.present(q.m2)]
    return {"w": w}, [q.round(f"max(r[{q.m2!r}] for r in rows{_where(conds)})")]


def _d_missing(q: Q):
    if not q.cfg["dirty"]:
        return None
    return {}, [f"sum(1 for r in rows if r[{q.m1!r}] is None)"]


def _group_totals(q: Q, conds: list[str], key: str) -> str:
    """Code that adds measure m1 per `key` into `totals` over the rows meeting `conds`."""
    return (
        "totals = {}\nfor r in rows:\n"
        f"    if {' and '.join(conds + q.present(q.m1))}:\n"
        f"        totals[{key}] = totals.get({key}, 0) + r[{q.m1!r}]"
    )


def _d_group_max(q: Q):
    y, month = q.year(), q.rng.randint(1, 12)
    conds = [f"r['date'].year == {y}", f"r['date'].month == {month}"]
    code = _group_totals(q, conds, f"r[{q.c1!r}]") + "\n" + q.total("max(totals.values())")
    return {"month": MONTHS[month], "year": y}, [code]


def _d_filter_mean(q: Q):
    w = q.pick("c2")
    pool = sorted(r["m1"] for r in q.recs if r["c2"] == w and r["m1"] is not None)
    if len(pool) < 8 or pool[len(pool) // 2] == pool[-1]:
        return None
    t = pool[len(pool) // 2]
    conds = [f"r[{q.c2!r}] == {w!r}", *q.present(q.m1, q.m2), f"r[{q.m1!r}] > {t!r}"]
    code = f"values = [r[{q.m2!r}] for r in rows{_where(conds)}]\n" + q.round("sum(values) / len(values)")
    return {"w": w, "t": q.fmt(t, "m1")}, [code]


def _d_distinct_days(q: Q):
    v, y = q.pick("c1"), q.year()
    return {"v": v, "year": y}, [
        f"len({{r['date'] for r in rows if r[{q.c1!r}] == {v!r} and r['date'].year == {y}}})"
    ]


def _d_month_count(q: Q):
    w, y, month = q.pick("c2"), q.year(), q.rng.randint(1, 12)
    code = f"sum(1 for r in rows if r[{q.c2!r}] == {w!r} and r['date'].year == {y} and r['date'].month == {month})"
    return {"w": w, "month": MONTHS[month], "year": y}, [code]


def _d_join_attr(q: Q):
    z = q.rng.choice(q.th["lookup"]["attr_values"])
    conds = [f"info[r[{q.c1!r}]][{q.th['lookup']['attr']!r}] == {z!r}", *q.present(q.m1)]
    code = _lookup_loader(q.th, q.cfg) + "\n" + q.total(f"sum(r[{q.m1!r}] for r in rows{_where(conds)})")
    return {"z": z}, [code]


def _d_join_target(q: Q):
    y = q.cfg["years"][-1]
    code = (
        _lookup_loader(q.th, q.cfg)
        + "\n"
        + _group_totals(q, [f"r['date'].year == {y}"], f"r[{q.c1!r}]")
        + f"\nsum(1 for k, e in info.items() if totals.get(k, 0) > float(e[{q.th['lookup']['num']!r}]))"
    )
    return {"year": y}, [code]


def _d_multi(q: Q):
    y, w = q.year(), q.pick("c2")
    start = date(y, 1, 1) + timedelta(days=q.rng.randrange(200))
    end = start + timedelta(days=q.rng.randint(40, 160))
    pool = sorted(r["m2"] for r in q.recs if r["m2"] is not None)
    t = pool[q.rng.randrange(len(pool) // 4, 3 * len(pool) // 4)]
    conds = [
        f"date({start.year}, {start.month}, {start.day}) <= r['date'] <= date({end.year}, {end.month}, {end.day})",
        f"r[{q.c2!r}] == {w!r}",
        *q.present(q.m2),
        f"r[{q.m2!r}] >= {t!r}",
    ]
    code = "from datetime import date\n" + f"sum(1 for r in rows{_where(conds)})"
    return {"d1": start.isoformat(), "d2": end.isoformat(), "w": w, "t": q.fmt(t, "m2")}, [code]


def _d_join_mean(q: Q):
    z = q.rng.choice(q.th["lookup"]["attr_values"])
    conds = [f"info[r[{q.c1!r}]][{q.th['lookup']['attr']!r}] == {z!r}", *q.present(q.m2)]
    code = (
        _lookup_loader(q.th, q.cfg)
        + f"\nvalues = [r[{q.m2!r}] for r in rows{_where(conds)}]\n"
        + q.round("sum(values) / len(values)")
    )
    return {"z": z}, [code]


def _monthly(q: Q, conds: list[str]) -> str:
    return (
        "monthly = [0] * 12\nfor r in rows:\n"
        f"    if {' and '.join(conds + q.present(q.m1))}:\n"
        f"        monthly[r['date'].month - 1] += r[{q.m1!r}]"
    )


def _d_monthly_median(q: Q):
    v, y = q.pick("c1"), q.year()
    code = "import statistics\n" + _monthly(q, [f"r[{q.c1!r}] == {v!r}", f"r['date'].year == {y}"])
    return {"v": v, "year": y}, [code + "\n" + q.round("statistics.median(monthly)")]


def _d_mom_increase(q: Q):
    y = q.year()
    code = (
        _monthly(q, [f"r['date'].year == {y}"])
        + "\n"
        + q.total("max(b - a for a, b in zip(monthly, monthly[1:]))")
    )
    return {"year": y}, [code]


def _d_weekday(q: Q):
    y, k = q.year(), q.rng.randrange(7)
    conds = [f"r['date'].year == {y}", f"r['date'].weekday() == {k}", *q.present(q.m1)]
    return {"year": y, "weekday": WEEKDAYS[k]}, [q.total(f"sum(r[{q.m1!r}] for r in rows{_where(conds)})")]


def _d_share(q: Q):
    v, w = q.pick("c1"), q.pick("c2")
    conds = [f"r[{q.c1!r}] == {v!r}", *q.present(q.m1)]
    code = (
        f"mine = [r for r in rows{_where(conds)}]\n"
        f"part = sum(r[{q.m1!r}] for r in mine if r[{q.c2!r}] == {w!r})\n"
        + q.round(f"100 * part / sum(r[{q.m1!r}] for r in mine)")
    )
    return {"v": v, "w": w}, [code]


def _d_streak(q: Q):
    v, y = q.pick("c1"), q.year()
    code = (
        "from datetime import timedelta\n"
        f"days = {{r['date'] for r in rows if r[{q.c1!r}] == {v!r} and r['date'].year == {y}}}\n"
        "best = 0\nfor d in days:\n"
        "    if d - timedelta(days=1) not in days:  # d starts a run\n"
        "        length = 1\n"
        "        while d + timedelta(days=length) in days:\n"
        "            length += 1\n"
        "        best = max(best, length)\nbest"
    )
    return {"v": v, "year": y}, [code]


def _d_window(q: Q):
    y, k = q.year(), q.rng.choice([7, 10, 14, 30])
    code = (
        "from datetime import date, timedelta\n"
        + _group_totals(q, [f"r['date'].year == {y}"], "r['date']")
        + f"\nstart = date({y}, 1, 1)\n"
        f"series = [totals.get(start + timedelta(days=i), 0) for i in range((date({y}, 12, 31) - start).days + 1)]\n"
        + q.total(f"max(sum(series[i:i + {k}]) for i in range(len(series) - {k - 1}))")
    )
    return {"year": y, "k": k}, [code]


# -- maths (no data) ----------------------------------------------------------------------------------------------
def _m_digit_sum(q: Q):
    a, b = q.rng.randint(3, 9), q.rng.randint(150, 600)
    return {"a": a, "b": b}, [f"sum(int(d) for d in str({a} ** {b}))"]


def _m_multiples(q: Q):
    a, b = q.rng.sample(range(3, 14), 2)
    n = q.rng.randint(5000, 90000)
    return {"a": a, "b": b, "n": n}, [f"sum(i for i in range(1, {n}) if i % {a} == 0 or i % {b} == 0)"]


def _m_lcm(q: Q):
    nums = q.rng.sample(range(12, 240), 4)
    return {"nums": ", ".join(map(str, nums[:3])) + f" and {nums[3]}"}, [f"import math\nmath.lcm(*{nums!r})"]


def _m_primes(q: Q):
    n = q.rng.randint(20000, 150000)
    code = (
        f"N = {n}\nsieve = bytearray([1]) * N\nsieve[0:2] = b'\\x00\\x00'\n"
        "for i in range(2, int(N ** 0.5) + 1):\n    if sieve[i]:\n"
        "        sieve[i*i::i] = bytearray(len(sieve[i*i::i]))\nsum(sieve)"
    )
    return {"n": n}, [code]


def _m_stairs(q: Q):
    steps = sorted(q.rng.sample(range(1, 8), 3))
    n, m = q.rng.randint(30, 400), q.rng.choice(MODULI)
    code = (
        f"ways = [1] + [0] * {n}\nfor i in range(1, {n} + 1):\n"
        f"    ways[i] = sum(ways[i - s] for s in {steps!r} if s <= i) % {m}\nways[{n}]"
    )
    return {"n": n, "m": m, "steps": f"{steps[0]}, {steps[1]} or {steps[2]}"}, [code]


def _m_fib_mod(q: Q):
    k, m = q.rng.randint(500, 5000), q.rng.choice([10007, 1_000_003, 998_244_353])
    return {"k": k, "m": m}, [f"x, y = 0, 1\nfor _ in range({k}):\n    x, y = y, (x + y) % {m}\nx"]


def _m_gcd_sum(q: Q):
    n = q.rng.randint(5000, 60000)
    return {"n": n}, [f"import math\nsum(math.gcd(i, {n}) for i in range(1, {n} + 1))"]


def _m_binom(q: Q):
    n = q.rng.randint(200, 3000)
    k, p = q.rng.randint(n // 5, n // 2), q.rng.choice([1_000_000_007, 998_244_353])
    return {"n": n, "k": k, "p": p}, [f"import math\nmath.comb({n}, {k}) % {p}"]


def _m_coins(q: Q):
    coins = sorted(q.rng.sample([1, 2, 3, 5, 7, 10, 20, 25, 50], 5))
    amount = q.rng.randint(80, 300)
    code = (
        f"ways = [1] + [0] * {amount}\nfor c in {coins!r}:\n"
        f"    for a in range(c, {amount} + 1):\n        ways[a] += ways[a - c]\nways[{amount}]"
    )
    return {"amount": amount, "coins": ", ".join(map(str, coins))}, [code]


def _m_collatz(q: Q):
    n = q.rng.randint(2000, 8000)
    code = (
        "lengths = {1: 1}\n\n\ndef length(n):\n    path = []\n    while n not in lengths:\n"
        "        path.append(n)\n        n = n // 2 if n % 2 == 0 else 3 * n + 1\n"
        "    total = lengths[n]\n    for m in reversed(path):\n        total += 1\n        lengths[m] = total\n"
        f"    return lengths[path[0]] if path else total\n\n\nmax(range(1, {n}), key=lambda s: (length(s), -s))"
    )
    return {"n": n}, [code]


def _m_digit_primes(q: Q):
    n = q.rng.randint(10000, 80000)
    code = (
        f"N = {n}\nsieve = bytearray([1]) * N\nsieve[0:2] = b'\\x00\\x00'\n"
        "for i in range(2, int(N ** 0.5) + 1):\n    if sieve[i]:\n"
        "        sieve[i*i::i] = bytearray(len(sieve[i*i::i]))\n"
        "sum(1 for p in range(N) if sieve[p] and sieve[sum(map(int, str(p)))])"
    )
    return {"n": n}, [code]


def _m_savings(q: Q):
    dep, bp = q.rng.choice([50, 75, 100, 150, 200, 250]), q.rng.choice([15, 25, 30, 40, 50, 60])
    target = dep * q.rng.randint(30, 120)
    code = (
        f"balance, months = 0, 0\nwhile balance < {target} * 100:  # in cents\n"
        f"    balance += {dep} * 100\n    balance += balance * {bp} // 10000\n    months += 1\nmonths"
    )
    return {"dep": dep, "rate": f"{bp / 100:g}", "target": target}, [code]


def _lcg(q: Q) -> tuple[dict, str]:
    s, a, c = (
        q.rng.randint(1, 999),
        q.rng.choice([1103515245, 69069, 22695477]),
        q.rng.choice([12345, 1, 1013904223]),
    )
    m, n = q.rng.choice([2**31, 2**32, 10**9 + 7]), q.rng.randint(1000, 3000)
    code = f"xs = [{s}]\nwhile len(xs) < {n}:\n    xs.append(({a} * xs[-1] + {c}) % {m})\nlen(xs)"
    return {"s": s, "a": a, "c": c, "m": m, "n": n, "last": n - 1}, code


def _m_inversions(q: Q):
    slots, gen = _lcg(q)
    code = (
        "import bisect\nseen, inversions = [], 0\nfor v in xs:\n"
        "    inversions += len(seen) - bisect.bisect_right(seen, v)\n    bisect.insort(seen, v)\ninversions"
    )
    return slots, [gen, code]


def _m_residues(q: Q):
    slots, gen = _lcg(q)
    k = q.rng.randint(slots["n"] // 3, slots["n"])  # about one to three terms per remainder
    return {**slots, "k": k}, [
        gen,
        f"from collections import Counter\ncounts = Counter(x % {k} for x in xs)\nsum(1 for c in counts.values() if c == 1)",
    ]


def _m_fib_huge(q: Q):
    k, m = q.rng.randint(10**12, 10**15), q.rng.choice([1_000_000_007, 998_244_353])
    code = (
        'def fib(n):\n    """(F(n), F(n+1)) mod M by fast doubling."""\n    if n == 0:\n        return 0, 1\n'
        "    a, b = fib(n // 2)\n    c = a * (2 * b - a) % M\n    d = (a * a + b * b) % M\n"
        f"    return (d, (c + d) % M) if n % 2 else (c, d)\n\n\nM = {m}\nfib({k})[0]"
    )
    return {"k": k, "m": m}, [code]


PARTS = {
    # kind of parts: (prompt words, the part sizes as a range, each size used at most once)
    "distinct": ("distinct positive integers", "range(1, {n} + 1)", True),
    "odd": ("odd positive integers (repeats allowed)", "range(1, {n} + 1, 2)", False),
    "distinct_odd": ("distinct odd positive integers", "range(1, {n} + 1, 2)", True),
    "at_least": ("integers of at least {lo} (repeats allowed)", "range({lo}, {n} + 1)", False),
}


def _m_partitions(q: Q):
    n, m, lo, kind = (
        q.rng.randint(60, 400),
        q.rng.choice(MODULI),
        q.rng.randint(2, 6),
        q.rng.choice(list(PARTS)),
    )
    words, sizes, once = PARTS[kind]
    # a size used at most once walks the totals downwards (0/1 knapsack), a reusable one upwards
    totals = f"range({n}, part - 1, -1)" if once else f"range(part, {n} + 1)"
    code = (
        f"ways = [1] + [0] * {n}\nfor part in {sizes.format(n=n, lo=lo)}:\n"
        f"    for total in {totals}:\n        ways[total] = (ways[total] + ways[total - part]) % {m}\nways[{n}]"
    )
    return {"n": n, "m": m, "parts": words.format(lo=lo)}, [code]


def _m_josephus(q: Q):
    n, k = q.rng.randint(1000, 50000), q.rng.randint(2, 9)
    return {"n": n, "k": k}, [
        f"survivor = 0\nfor size in range(2, {n} + 1):\n    survivor = (survivor + {k}) % size\nsurvivor + 1"
    ]


def _m_lis(q: Q):
    slots, gen = _lcg(q)
    code = gen.rsplit("\n", 1)[0] + (
        "\nimport bisect\ntails = []\nfor v in xs:\n    i = bisect.bisect_left(tails, v)\n"
        "    tails[i:i + 1] = [v]\nlen(tails)"
    )
    return slots, [code]


def _m_grid(q: Q):
    rows, cols = q.rng.randint(10, 16), q.rng.randint(10, 16)
    a, b, p = q.rng.randint(2, 9), q.rng.randint(2, 9), q.rng.choice([5, 7, 11, 13])
    code = (
        f"R, C = {rows}, {cols}\npaths = [[0] * C for _ in range(R)]\nfor r in range(R):\n    for c in range(C):\n"
        f"        if (r * {a} + c * {b}) % {p} == 0 and (r, c) not in ((0, 0), (R - 1, C - 1)):\n"
        "            continue  # blocked\n"
        "        paths[r][c] = 1 if r == c == 0 else (paths[r - 1][c] if r else 0) + (paths[r][c - 1] if c else 0)\n"
        "paths[R - 1][C - 1]"
    )
    return {"height": rows, "width": cols, "a": a, "b": b, "p": p}, [code]


def _m_digit_dp(q: Q):
    n, k = q.rng.randint(10**6, 10**9), q.rng.randint(3, 23)
    code = (
        f"from functools import lru_cache\n\ndigits = [int(d) for d in str({n})]\n\n\n@lru_cache(maxsize=None)\n"
        "def count(pos, rem, tight):\n    if pos == len(digits):\n        return rem == 0\n"
        "    top = digits[pos] if tight else 9\n"
        f"    return sum(count(pos + 1, (rem + d) % {k}, tight and d == top) for d in range(top + 1))\n\n\n"
        "count(0, 0, True) - 1  # 0 itself has digit sum 0"
    )
    return {"n": n, "k": k}, [code]


LCG_TEXT = "x_0 = {s}, x_(i+1) = ({a} * x_i + {c}) mod {m}, with the {n} terms x_0 .. x_{last}"
KINDS: dict[str, tuple[int, bool, object, list[str]]] = {
    # kind: (level, uses the data, maker, prompt phrasings)
    "total": (1, True, _d_total, [
        "What is the total {m1} over all {rows} in {src}?",
        "Add up the {m1} of every {row} in {src}. What do you get?",
    ]),
    "count": (1, True, _d_count, [
        'How many {rows} in {src} are recorded for {c1} "{v}"?',
        'Count the {rows} of {c1} "{v}" in {src}.',
    ]),
    "mean": (1, True, _d_mean, [
        'What is the average {m2} of the {rows} in {src} with {c2} "{w}"?',
        'Across the {rows} in {src} whose {c2} is "{w}", what is the mean {m2}?',
    ]),
    "max": (1, True, _d_max, ['What is the highest {m2} among the {rows} in {src} with {c2} "{w}"?']),
    "missing": (1, True, _d_missing, ["How many {rows} in {src} have no {m1} value?"]),
    "group_max": (2, True, _d_group_max, [
        "In {src}, what was the highest total {m1} reached by a single {c1} in {month} {year}?",
        "Group the {rows} of {month} {year} in {src} by {c1}. What is the largest total {m1} of any group?",
    ]),
    "filter_mean": (2, True, _d_filter_mean, [
        'From {src}: what is the average {m2} of the {c2} "{w}" {rows} whose {m1} is above {t}?',
    ]),
    "distinct_days": (2, True, _d_distinct_days, [
        'According to {src}, on how many different days in {year} did {c1} "{v}" have at least one {row}?',
    ]),
    "month_count": (2, True, _d_month_count, [
        'How many {rows} with {c2} "{w}" does {src} list for {month} {year}?',
    ]),
    "join_attr": (3, True, _d_join_attr, [
        '{lookup_file} gives each {c1} a {attr}. What is the total {m1} in {src} of all {rows} at {c1}s whose '
        '{attr} is "{z}"?',
    ]),
    "join_target": (3, True, _d_join_target, [
        "For how many {c1}s did the total {m1} in {year}, per {src}, exceed the {num_label} given in "
        "{lookup_file}?",
    ]),
    "multi": (3, True, _d_multi, [
        'How many {rows} in {src} between {d1} and {d2} (both days included) had {c2} "{w}" and a {m2} of at '
        "least {t}?",
    ]),
    "join_mean": (3, True, _d_join_mean, [
        'Using {src} and {lookup_file}, what is the average {m2} of the {rows} at {c1}s whose {attr} is "{z}"?',
    ]),
    "monthly_median": (4, True, _d_monthly_median, [
        'From {src}, total the {m1} of {c1} "{v}" for each of the 12 months of {year} (a month without {rows} '
        "counts as 0). What is the median of these monthly totals?",
    ]),
    "mom_increase": (4, True, _d_mom_increase, [
        "From {src}, total the {m1} of each month of {year}. What is the largest increase from one month to the "
        "next?",
    ]),
    "weekday": (4, True, _d_weekday, [
        "In {src}, what was the total {m1} of all {rows} that fell on a {weekday} in {year}?",
    ]),
    "share": (4, True, _d_share, [
        'In {src}, what percentage of the total {m1} of {c1} "{v}" came from {rows} with {c2} "{w}"? Answer in '
        "percent (12.5 for 12.5%).",
    ]),
    "streak": (5, True, _d_streak, [
        'In {src}, what is the longest run of consecutive calendar days in {year} on each of which {c1} "{v}" had '
        "at least one {row}?",
    ]),
    "window": (5, True, _d_window, [
        "In {src}, what is the largest total {m1} over any {k} consecutive calendar days of {year}? Days without "
        "{rows} count as 0.",
    ]),
    "digit_sum": (1, False, _m_digit_sum, [
        "What is the sum of the decimal digits of {a}^{b}?",
        "Add up all the decimal digits of {a} raised to the power {b}.",
    ]),
    "multiples": (1, False, _m_multiples, [
        "What is the sum of all positive integers below {n} that are divisible by {a} or by {b}?",
    ]),
    "lcm": (1, False, _m_lcm, ["What is the least common multiple of {nums}?"]),
    "primes": (2, False, _m_primes, [
        "How many prime numbers are there below {n}?",
        "Count the primes smaller than {n}.",
    ]),
    "stairs": (2, False, _m_stairs, [
        "In how many ways can you climb a staircase of {n} steps if every move climbs {steps} steps? Give the "
        "count modulo {m}.",
    ]),
    "fib_mod": (2, False, _m_fib_mod, ["What is the {k}-th Fibonacci number (F(1) = F(2) = 1) modulo {m}?"]),
    "gcd_sum": (2, False, _m_gcd_sum, ["What is the sum of gcd(i, {n}) over all integers i from 1 to {n}?"]),
    "binom": (2, False, _m_binom, ["What is the binomial coefficient C({n}, {k}) modulo {p}?"]),
    "coins": (3, False, _m_coins, [
        "In how many ways can an amount of {amount} be paid with coins of values {coins} (any number of each, "
        "order does not matter)?",
    ]),
    "collatz": (3, False, _m_collatz, [
        "Which starting number below {n} gives the longest Collatz sequence (n -> n/2 if n is even, else 3n+1, "
        "until 1)? If several tie, give the smallest.",
    ]),
    "digit_primes": (3, False, _m_digit_primes, [
        "How many primes below {n} have a digit sum that is also prime?",
    ]),
    "savings": (3, False, _m_savings, [
        "You pay {dep} into an empty account at the start of every month; at the end of each month it earns "
        "{rate}% interest on the balance, rounded down to the cent. After how many months does the balance "
        "first reach at least {target}?",
    ]),
    "inversions": (4, False, _m_inversions, [
        "Generate the sequence " + LCG_TEXT + ". How many pairs i < j have x_i > x_j?",
    ]),
    "residues": (4, False, _m_residues, [
        "Generate the sequence " + LCG_TEXT + ". Among the remainders x_i mod {k}, how many values occur exactly "
        "once?",
    ]),
    "fib_huge": (5, False, _m_fib_huge, ["What is the {k}-th Fibonacci number (F(1) = F(2) = 1) modulo {m}?"]),
    "partitions": (5, False, _m_partitions, [
        "In how many ways can {n} be written as a sum of {parts}, order not mattering? Give the count modulo "
        "{m}.",
    ]),
    "josephus": (5, False, _m_josephus, [
        "{n} people stand in a circle, numbered 1 to {n}. Counting from person 1, every {k}-th person leaves the "
        "circle (the count goes on around the circle) until one remains. What is that person's number?",
    ]),
    "lis": (5, False, _m_lis, [
        "Take the sequence " + LCG_TEXT + ". How long is its longest strictly increasing subsequence?",
    ]),
    "grid": (5, False, _m_grid, [
        "On a grid of {height} rows and {width} columns you walk from the top-left cell to the bottom-right one, moving only right or "
        "down. Cell (r, c), counted from 0, is blocked when (r*{a} + c*{b}) is divisible by {p}, except the start "
        "and the end. How many paths are there?",
    ]),
    "digit_dp": (5, False, _m_digit_dp, [
        "How many integers from 1 to {n} have a digit sum divisible by {k}?",
    ]),
}  # fmt: skip


def kind_order() -> list[str]:
    """The kinds interleaved by level, data and maths kinds alternating within a level, so any window of
    candidates climbs the whole ladder."""
    queues = []
    for level in sorted({lv for lv, *_ in KINDS.values()}):
        data = [k for k, (lv, uses, *_) in KINDS.items() if lv == level and uses]
        maths = [k for k, (lv, uses, *_) in KINDS.items() if lv == level and not uses]
        queues.append([k for pair in zip_longest(data, maths) for k in pair if k])
    return [k for row in zip_longest(*queues) for k in row if k]


# -- tasks ------------------------------------------------------------------------------------------------------
def _usable(value) -> bool:
    """A number a question can ask for: finite, not 0 (a do-nothing guess), not one a random episode ends on,
    and small enough for the verifier's tolerance to tell neighbours apart."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value == value and 0 < abs(value) < MAX_ANSWER and float(value) not in RANDOM_POLICY_ANSWERS


def _answer_text(value, fmt: str) -> str:
    if fmt == "boxed":
        return f"The answer is \\boxed{{{value}}}."
    if fmt == "answer_line":
        return f"I computed it with Python.\nANSWER: {value}"
    return f"<answer>{value}</answer>"


def _perturbed(value, decimals: int):
    """A near miss: off by one for integers, 10% off (kept to the rounding rule) otherwise."""
    if isinstance(value, int):
        return value + 1
    near = round(value * 1.1, decimals) if decimals else round(value * 1.1)
    return near if near != value else value + 1


def _solution(cfg: dict, th: dict, uses_data: bool, cells: list[str]) -> list[ToolCall]:
    """A careful analyst's calls: look at the files when the tools allow it, then run the cells."""
    calls = []
    if uses_data and cfg["list_files"]:
        calls.append(ToolCall(name=cfg["list_files"], arguments={}))
    if uses_data and cfg["head"]:
        name, path, count = cfg["head"]
        calls.append(ToolCall(name=name, arguments={path: _main_files(th, cfg)[0], count: 3}))
    return calls + [ToolCall(name=cfg["python"], arguments={"code": c}) for c in cells]


def make_tasks(env_dir: Path, key: tuple[str, int], seed: int, n_tasks: int) -> list[dict]:
    """Candidate tasks (family.py's dicts). Each expected value is what the reference cells compute on a scratch
    copy of state/; the guess is a sibling question's answer, or a near miss when the kind has no sibling."""
    theme, v = key
    th, cfg = THEME[theme], variant_config(theme, v, seed)
    recs = make_records(th, cfg, seed)
    loader = _loader(th, cfg)
    order = kind_order()
    offset = ([t["name"] for t in THEMES].index(theme) * 7 + v * 3) % len(order)
    fmt = cfg["answer_format"]
    out, seen = [], set()
    with tempfile.TemporaryDirectory() as scratch:
        for p in sorted((Path(env_dir) / "state").iterdir()):
            shutil.copyfile(p, Path(scratch) / p.name)
        for k in range(n_tasks * 3):
            if len(out) == n_tasks:
                break
            kind = order[(offset + k) % len(order)]
            level, uses_data, maker, phrasings = KINDS[kind]
            q = Q(th, cfg, recs, random.Random(f"{seed}:{theme}:{v}:task:{k}"))
            made = maker(q)
            if made is None:
                continue
            slots, cells = made
            if uses_data:  # the data is loaded in the first cell, or in a cell of its own at level 4
                cells = [loader + "\nlen(rows)", *cells] if level == 4 else [loader + "\n" + cells[0]]
            code = "\n".join(cells)
            if code in seen:  # the same computation asked again
                continue
            seen.add(code)
            try:
                value = run_reference(code, Path(scratch))
            except (ZeroDivisionError, ValueError):  # an empty selection (no rows that month): ask another
                continue
            if not _usable(value):
                continue
            t_index = q.rng.randrange(len(phrasings))
            out.append(
                {
                    "kind": kind,
                    "template": f"{NAME}/{kind}/{t_index}",
                    "difficulty": level,
                    "prompt": [phrasings[t_index].format(**q.slots(), **slots)],
                    "verifier": ANSWER_FORMATS[fmt][0],
                    "params": {"expected": float(value), "rel_tol": REL_TOL},
                    "solution": _solution(cfg, th, uses_data, cells),
                    "answer": _answer_text(value, fmt),
                    "value": value,
                }
            )
    for c in out:
        siblings = [o["value"] for o in out if o["kind"] == c["kind"] and o["value"] != c["value"]]
        c["guess"] = _answer_text(siblings[0] if siblings else _perturbed(c["value"], cfg["decimals"]), fmt)
    return [{k: x for k, x in c.items() if k != "value"} for c in out]
