"""Trip-planning tools over an SQLite travel database: cities, hotels, attractions, restaurants, transport and
weather. Read-only lookups plus submit_result, which hands in the finished plan."""

from __future__ import annotations

from toolgym_env import Context, ToolError, tool


def _city(ctx: Context, city: str) -> str:
    row = ctx.db.execute("SELECT name FROM cities WHERE lower(name) = lower(?)", (city,)).fetchone()
    if row is None:
        raise ToolError(f"there is no city named {city!r}; call list_cities to see the cities.")
    return row["name"]


@tool
def list_cities(ctx: Context) -> list[dict]:
    """List every city in the travel database with its region."""
    return ctx.rows("SELECT name, region FROM cities ORDER BY name")


@tool
def get_city(ctx: Context, city: str) -> dict:
    """Describe one city.

    Args:
        city: The city's name, e.g. "Lisbon".
    """
    name = _city(ctx, city)
    return ctx.rows("SELECT name, region, description FROM cities WHERE name = ?", (name,))[0]


@tool
def list_hotels(ctx: Context, city: str) -> list[dict]:
    """List the hotels of a city with their nightly price and rating.

    Args:
        city: The city's name.
    """
    name = _city(ctx, city)
    return ctx.rows("SELECT name, price, rating FROM hotels WHERE city = ? ORDER BY name", (name,))


@tool
def find_hotels_by_price(
    ctx: Context, city: str, min_price: float = 0, max_price: float = 100000
) -> list[dict]:
    """Find the hotels of a city whose nightly price is within a range.

    Args:
        city: The city's name.
        min_price: Lowest nightly price to include.
        max_price: Highest nightly price to include.
    """
    name = _city(ctx, city)
    return ctx.rows(
        "SELECT name, price, rating FROM hotels WHERE city = ? AND price BETWEEN ? AND ? ORDER BY price",
        (name, min_price, max_price),
    )


@tool
def get_hotel(ctx: Context, name: str) -> dict:
    """Look up a hotel by its exact name: city, nightly price, rating and address.

    Args:
        name: The hotel's name.
    """
    rows = ctx.rows("SELECT name, city, price, rating, address FROM hotels WHERE name = ?", (name,))
    if not rows:
        raise ToolError(f"there is no hotel named {name!r}; list_hotels shows a city's hotels.")
    return rows[0]


@tool
def list_attractions(ctx: Context, city: str) -> list[dict]:
    """List the attractions of a city with ticket price and rating.

    Args:
        city: The city's name.
    """
    name = _city(ctx, city)
    return ctx.rows(
        "SELECT name, kind, ticket_price, rating FROM attractions WHERE city = ? ORDER BY name", (name,)
    )


@tool
def get_attraction(ctx: Context, name: str) -> dict:
    """Look up an attraction by its exact name.

    Args:
        name: The attraction's name.
    """
    rows = ctx.rows(
        "SELECT name, city, kind, ticket_price, rating, hours FROM attractions WHERE name = ?", (name,)
    )
    if not rows:
        raise ToolError(
            f"there is no attraction named {name!r}; list_attractions shows a city's attractions."
        )
    return rows[0]


@tool
def list_restaurants(ctx: Context, city: str) -> list[dict]:
    """List the restaurants of a city with cuisine, average cost per person and rating.

    Args:
        city: The city's name.
    """
    name = _city(ctx, city)
    return ctx.rows(
        "SELECT name, cuisine, avg_cost, rating FROM restaurants WHERE city = ? ORDER BY name", (name,)
    )


@tool
def find_restaurants_by_rating(ctx: Context, city: str, min_rating: float) -> list[dict]:
    """Find the restaurants of a city rated at least `min_rating`, best first.

    Args:
        city: The city's name.
        min_rating: Lowest rating to include (0 to 5).
    """
    name = _city(ctx, city)
    return ctx.rows(
        "SELECT name, cuisine, avg_cost, rating FROM restaurants WHERE city = ? AND rating >= ? "
        "ORDER BY rating DESC, name",
        (name, min_rating),
    )


@tool
def get_restaurant(ctx: Context, name: str) -> dict:
    """Look up a restaurant by its exact name.

    Args:
        name: The restaurant's name.
    """
    rows = ctx.rows("SELECT name, city, cuisine, avg_cost, rating FROM restaurants WHERE name = ?", (name,))
    if not rows:
        raise ToolError(
            f"there is no restaurant named {name!r}; list_restaurants shows a city's restaurants."
        )
    return rows[0]


@tool
def list_destinations(ctx: Context, from_city: str) -> list[str]:
    """List the cities reachable from a city by a direct train or flight.

    Args:
        from_city: The departure city.
    """
    name = _city(ctx, from_city)
    rows = ctx.db.execute(
        "SELECT DISTINCT to_city FROM transport WHERE from_city = ? ORDER BY to_city", (name,)
    )
    return [r["to_city"] for r in rows]


@tool
def search_transport(ctx: Context, from_city: str, to_city: str) -> list[dict]:
    """Direct trains and flights between two cities, with departure time, duration and price.

    Args:
        from_city: The departure city.
        to_city: The arrival city.
    """
    a, b = _city(ctx, from_city), _city(ctx, to_city)
    return ctx.rows(
        "SELECT mode, depart, hours, price FROM transport WHERE from_city = ? AND to_city = ? ORDER BY depart",
        (a, b),
    )


@tool
def get_weather(ctx: Context, city: str, date: str) -> dict:
    """The weather forecast of a city on a date.

    Args:
        city: The city's name.
        date: The date as YYYY-MM-DD.
    """
    name = _city(ctx, city)
    rows = ctx.rows(
        "SELECT city, date, condition, high_c, low_c FROM weather WHERE city = ? AND date = ?", (name, date)
    )
    if not rows:
        raise ToolError(f"there is no forecast for {name} on {date!r}; use a date of the trip as YYYY-MM-DD.")
    return rows[0]


@tool
def get_current_date(ctx: Context) -> str:
    """Today's date (YYYY-MM-DD)."""
    return ctx.today()


@tool(submit=True)
def submit_result(ctx: Context, plan: list[dict]) -> str:
    """Hand in the finished plan; this ends the task.

    Args:
        plan: One object per day, in order, each with the keys time (YYYY-MM-DD), city, hotel,
            afternoon_restaurant, afternoon_attraction and evening_restaurant.
    """
    keys = {"time", "city", "hotel", "afternoon_restaurant", "afternoon_attraction", "evening_restaurant"}
    for i, day in enumerate(plan):
        missing = keys - set(day)
        if missing:
            raise ToolError(
                f"day {i + 1} of the plan lacks {', '.join(sorted(missing))}; fix it and submit again."
            )
    ctx.submit(plan)
    return "Plan received."
