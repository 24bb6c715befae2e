"""A code-interpreter variant's data: the clean records and the lookup entries (from (theme, variant, seed)
alone), the files that hold them in the variant's format and dirt, and the reference code that reads them back
(the first cell of every data question)."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import date, datetime, timedelta
from pathlib import Path


def main_files(th: dict, cfg: dict) -> list[str]:
    ext = cfg["main_format"]
    if len(cfg["years"]) == 1:
        return [f"{th['file']}.{ext}"]
    return [f"{th['file']}-{y}.{ext}" for y in cfg["years"]]


def lookup_file(th: dict, cfg: dict) -> str:
    return f"{th['lookup']['file']}.{cfg['lookup_format']}"


def date_col(cfg: dict) -> str:
    return "timestamp" if "%H" in cfg["date_format"] else "date"


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
    row = {th["id"]: r["id"], date_col(cfg): when.strftime(cfg["date_format"])}
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
    for name, year in zip(main_files(th, cfg), cfg["years"], strict=True):
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
    (state / lookup_file(th, cfg)).write_text(_lookup_text(lookup, cfg["lookup_format"]))


def _row_year(row: dict, cfg: dict) -> int:
    return datetime.strptime(row[date_col(cfg)], cfg["date_format"]).year


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


def loader_code(th: dict, cfg: dict) -> str:
    """Code that reads the variant's files into `rows`: dicts with a `date` (datetime.date), the category labels
    and the measures (None when missing), each record once."""
    is_csv, dirty, fmt = cfg["main_format"] == "csv", cfg["dirty"], cfg["date_format"]
    files = main_files(th, cfg)
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
    col, fmt = date_col(cfg), cfg["date_format"]
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


def lookup_loader_code(th: dict, cfg: dict) -> str:
    """Code that reads the lookup file into `info`: first-category label -> entry."""
    name, key, fmt = lookup_file(th, cfg), th["c1"]["col"], cfg["lookup_format"]
    if fmt == "csv":
        head = "import csv\n" if cfg["main_format"] != "csv" else ""
        return f"{head}with open({name!r}, newline='', encoding='utf-8') as f:\n    info = {{e[{key!r}]: e for e in csv.DictReader(f)}}"
    head = "import json\n" if cfg["main_format"] != "jsonl" else ""
    load = "json.load(f)" if fmt == "json" else "(json.loads(line) for line in f if line.strip())"
    return f"{head}with open({name!r}, encoding='utf-8') as f:\n    info = {{e[{key!r}]: e for e in {load}}}"
