"""Order-desk tools over an SQLite shop database: customers, products, orders. Lookups are read tools;
placing, cancelling and changing orders are write tools with the shop's business rules."""

from __future__ import annotations

from typing import Literal

from toolgym_env import Context, ToolError, tool

MAX_QUANTITY = 5


def _customer(ctx: Context, customer_id: str) -> dict:
    rows = ctx.rows("SELECT id, name, email, tier, address FROM customers WHERE id = ?", (customer_id,))
    if not rows:
        raise ToolError(f"there is no customer {customer_id!r}; find_customer looks one up by email.")
    return rows[0]


def _order(ctx: Context, order_id: str) -> dict:
    rows = ctx.rows("SELECT * FROM orders WHERE id = ?", (order_id,))
    if not rows:
        raise ToolError(f"there is no order {order_id!r}; list_orders shows a customer's orders.")
    order = rows[0]
    order["items"] = ctx.rows(
        "SELECT i.product_id, p.name, i.quantity, i.unit_price FROM order_items i JOIN products p "
        "ON p.id = i.product_id WHERE i.order_id = ? ORDER BY i.product_id",
        (order_id,),
    )
    return order


def _pending(ctx: Context, order_id: str) -> dict:
    order = _order(ctx, order_id)
    if order["status"] != "pending":
        raise ToolError(f"order {order_id} is {order['status']}; only pending orders can be changed.")
    return order


def _retotal(ctx: Context, order_id: str) -> float:
    order = _order(ctx, order_id)
    tier = _customer(ctx, order["customer_id"])["tier"]
    subtotal = sum(i["quantity"] * i["unit_price"] for i in order["items"])
    total = round(subtotal * (0.9 if tier == "gold" else 1.0), 2)
    ctx.db.execute("UPDATE orders SET total = ? WHERE id = ?", (total, order_id))
    return total


@tool
def find_customer(ctx: Context, email: str) -> dict:
    """Find a customer by email address.

    Args:
        email: The customer's email address.
    """
    rows = ctx.rows(
        "SELECT id, name, email, tier, address FROM customers WHERE lower(email) = lower(?)", (email,)
    )
    if not rows:
        raise ToolError(f"no customer has the email {email!r}; check the address with the user.")
    return rows[0]


@tool
def get_customer(ctx: Context, customer_id: str) -> dict:
    """A customer's details: name, email, tier (standard or gold; gold gets 10% off) and address.

    Args:
        customer_id: The customer's id, e.g. "C001".
    """
    return _customer(ctx, customer_id)


@tool
def list_orders(
    ctx: Context,
    customer_id: str,
    status: Literal["pending", "shipped", "delivered", "cancelled"] | None = None,
) -> list[dict]:
    """List a customer's orders, newest first, optionally only those with one status.

    Args:
        customer_id: The customer's id.
        status: Only orders with this status.
    """
    _customer(ctx, customer_id)
    sql, args = "SELECT id, status, created_at, total FROM orders WHERE customer_id = ?", [customer_id]
    if status is not None:
        sql += " AND status = ?"
        args.append(status)
    return ctx.rows(sql + " ORDER BY created_at DESC, id", args)


@tool
def get_order(ctx: Context, order_id: str) -> dict:
    """An order with its items, status, total and shipping address.

    Args:
        order_id: The order's id.
    """
    return _order(ctx, order_id)


@tool
def search_products(ctx: Context, query: str) -> list[dict]:
    """Search products whose name or category contains the query (case-insensitive).

    Args:
        query: Words to look for, e.g. "kettle".
    """
    like = f"%{query.lower()}%"
    return ctx.rows(
        "SELECT id, name, category, price, stock FROM products WHERE lower(name) LIKE ? OR lower(category) LIKE ? "
        "ORDER BY id",
        (like, like),
    )


@tool
def get_product(ctx: Context, product_id: str) -> dict:
    """A product's name, category, price and stock.

    Args:
        product_id: The product's id, e.g. "P004".
    """
    rows = ctx.rows("SELECT id, name, category, price, stock FROM products WHERE id = ?", (product_id,))
    if not rows:
        raise ToolError(f"there is no product {product_id!r}; search_products finds products by name.")
    return rows[0]


@tool
def get_current_time(ctx: Context) -> str:
    """The current date and time (ISO 8601)."""
    return ctx.now().isoformat()


@tool(access="write")
def place_order(ctx: Context, customer_id: str, items: list[dict]) -> dict:
    """Place a new order shipped to the customer's address. Gold customers get 10% off the total.

    Args:
        customer_id: The customer's id.
        items: One object per product: {"product_id": "P004", "quantity": 2}; 1 to 5 of each product.
    """
    customer = _customer(ctx, customer_id)
    if not items:
        raise ToolError("an order needs at least one item.")
    wanted: dict[str, int] = {}
    for item in items:
        pid, qty = item.get("product_id"), item.get("quantity")
        if not isinstance(pid, str) or not isinstance(qty, int) or isinstance(qty, bool):
            raise ToolError('each item must be {"product_id": "<id>", "quantity": <integer>}.')
        if pid in wanted:
            raise ToolError(f"product {pid} appears twice; give each product once with its total quantity.")
        if not 1 <= qty <= MAX_QUANTITY:
            raise ToolError(f"the quantity of {pid} must be between 1 and {MAX_QUANTITY}.")
        product = get_product(ctx, pid)
        if product["stock"] < qty:
            raise ToolError(f"only {product['stock']} of {product['name']} ({pid}) are in stock.")
        wanted[pid] = qty
    order_id = ctx.new_id("O")  # only after every check passed, so a failed attempt never shifts the ids
    ctx.db.execute(
        "INSERT INTO orders (id, customer_id, status, created_at, total, address, cancel_reason) "
        "VALUES (?, ?, 'pending', ?, 0, ?, NULL)",
        (order_id, customer_id, ctx.now().isoformat(), customer["address"]),
    )
    for pid, qty in wanted.items():
        price = get_product(ctx, pid)["price"]
        ctx.db.execute("INSERT INTO order_items VALUES (?, ?, ?, ?)", (order_id, pid, qty, price))
        ctx.db.execute("UPDATE products SET stock = stock - ? WHERE id = ?", (qty, pid))
    _retotal(ctx, order_id)
    return _order(ctx, order_id)


@tool(access="write")
def cancel_order(
    ctx: Context, order_id: str, reason: Literal["no_longer_needed", "ordered_by_mistake", "found_cheaper"]
) -> dict:
    """Cancel a pending order and put its items back in stock.

    Args:
        order_id: The order's id.
        reason: Why the customer cancels.
    """
    order = _pending(ctx, order_id)
    for item in order["items"]:
        ctx.db.execute(
            "UPDATE products SET stock = stock + ? WHERE id = ?", (item["quantity"], item["product_id"])
        )
    ctx.db.execute(
        "UPDATE orders SET status = 'cancelled', cancel_reason = ? WHERE id = ?", (reason, order_id)
    )
    return _order(ctx, order_id)


@tool(access="write")
def change_quantity(ctx: Context, order_id: str, product_id: str, quantity: int) -> dict:
    """Change how many of a product a pending order holds (0 removes the line; one line must remain).

    Args:
        order_id: The order's id.
        product_id: The product in the order.
        quantity: The new quantity, 0 to 5.
    """
    order = _pending(ctx, order_id)
    line = next((i for i in order["items"] if i["product_id"] == product_id), None)
    if line is None:
        raise ToolError(f"order {order_id} has no product {product_id}; get_order shows its items.")
    if not 0 <= quantity <= MAX_QUANTITY:
        raise ToolError(f"the quantity must be between 0 and {MAX_QUANTITY}.")
    if quantity == 0 and len(order["items"]) == 1:
        raise ToolError("that would leave the order empty; cancel the order instead.")
    delta = quantity - line["quantity"]
    if delta > get_product(ctx, product_id)["stock"]:
        raise ToolError(f"not enough {line['name']} in stock for {quantity}.")
    ctx.db.execute("UPDATE products SET stock = stock - ? WHERE id = ?", (delta, product_id))
    if quantity == 0:
        ctx.db.execute(
            "DELETE FROM order_items WHERE order_id = ? AND product_id = ?", (order_id, product_id)
        )
    else:
        ctx.db.execute(
            "UPDATE order_items SET quantity = ? WHERE order_id = ? AND product_id = ?",
            (quantity, order_id, product_id),
        )
    _retotal(ctx, order_id)
    return _order(ctx, order_id)


@tool(access="write")
def update_order_address(ctx: Context, order_id: str, address: str) -> dict:
    """Ship a pending order to a different address.

    Args:
        order_id: The order's id.
        address: The full new shipping address.
    """
    _pending(ctx, order_id)
    if len(address.strip()) < 5:
        raise ToolError("give the full address (street, number and city).")
    ctx.db.execute("UPDATE orders SET address = ? WHERE id = ?", (address.strip(), order_id))
    return _order(ctx, order_id)
