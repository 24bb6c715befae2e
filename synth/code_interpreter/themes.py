"""The code-interpreter family's themes, as data: a fact table (a date, two category columns, two measures) and a
lookup file keyed by the first category, with the words a question uses for each."""

from __future__ import annotations


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
        "sensors", "a factory's sensor logs", "sensor-log", "log entry", "log entries", "entry_id",
        ("sensor", "sensor", ["s01", "s02", "s03", "s04", "s05", "s06", "s07"]),
        ("status", "status", ["ok", "warn", "fault"]),
        ("events", "event count", 0, 25, 0), ("voltage", "voltage", 3.0, 5.5, 3),
        ("sensors", "site", ["plant-a", "plant-b", "lab"], "event_budget", "yearly event budget"),
    ),
    _theme(
        "exams", "a school district's exam office", "exam-results", "exam result", "exam results", "result_id",
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
        "energy", "a campus energy office", "meter-readings", "meter reading", "meter readings", "reading_id",
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
        ("wards", "building", ["east-wing", "west-wing"], "bed_day_capacity", "annual bed-day capacity"),
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
        ("stations", "district", ["old-town", "new-town"], "minute_goal", "annual ride-minute goal"),
    ),
    _theme(
        "restaurant", "a restaurant group", "orders", "order", "orders", "order_id",
        ("outlet", "outlet", ["bistro", "cantina", "diner", "grill", "trattoria"]),
        ("channel", "channel", ["dine-in", "takeaway", "delivery"]),
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
        "air_quality", "a city's air-quality monitoring unit", "air-quality", "measurement", "measurements",
        "measurement_id",
        ("site", "site", ["bridge", "center", "harbor", "park", "school", "station"]),
        ("traffic", "traffic level", ["low", "medium", "high"]),
        ("vehicles", "vehicle count", 0, 900, 0), ("pm25", "PM2.5 in ug/m3", 2.0, 150.0, 1),
        ("sites", "area", ["urban", "suburban", "rural"], "vehicle_limit", "annual vehicle limit"),
    ),
    _theme(
        "gym", "a chain of fitness clubs", "class-attendance", "class session", "class sessions", "session_id",
        ("club", "club", ["downtown", "riverside", "westpark", "northside", "lakeview"]),
        ("class_type", "class type", ["yoga", "spin", "hiit", "pilates", "boxing"]),
        ("attendees", "attendees", 1, 30, 0), ("rating", "instructor rating", 1.0, 5.0, 1),
        ("clubs", "city", ["aston", "bexley", "carlow"], "attendance_goal", "annual attendance goal"),
    ),
    _theme(
        "ev_charging", "an EV charging network", "charging-sessions", "charging session", "charging sessions",
        "session_id",
        ("site", "site", ["mall", "depot", "hotel", "office", "terminal", "stadium"]),
        ("connector", "connector", ["ccs", "chademo", "type2"]),
        ("energy_kwh", "energy delivered in kWh", 1.0, 90.0, 2), ("duration_min", "session length in minutes", 5, 240, 0),
        ("sites", "operator", ["voltra", "chargeco"], "kwh_goal", "annual kWh goal"),
    ),
]  # fmt: skip
THEME = {t["name"]: t for t in THEMES}
