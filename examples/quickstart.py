"""Quickstart: an order pipeline fed the way an async service feeds it.

Orders arrive on a push stream (as from a web handler), are converted to euros, large ones are
flagged for review, and revenue is booked per customer. The same graph then runs over a batch of
historic orders with ``from_collection``.

Run it with ``make demo`` or ``python examples/quickstart.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sage_streams import LocalEnvironment

Order = dict[str, Any]

RATES_TO_EUR = {"EUR": 1.0, "USD": 0.92, "GBP": 1.17}

LIVE_ORDERS: list[Order] = [
    {"order_id": 101, "customer": "ana", "amount": 42.0, "currency": "EUR"},
    {"order_id": 102, "customer": "bo", "amount": 120.0, "currency": "USD"},
    {"order_id": 103, "customer": "ana", "amount": 15.5, "currency": "GBP"},
    {"order_id": 104, "customer": "chen", "amount": 260.0, "currency": "EUR"},
    {"order_id": 105, "customer": "bo", "amount": 8.0, "currency": "USD"},
]

HISTORY: list[Order] = [
    {"order_id": n, "customer": ["ana", "bo", "chen"][n % 3], "amount": float(n % 97), "currency": "EUR"}
    for n in range(1, 1001)
]


def to_eur(order: Order) -> Order:
    """A new order dict with the amount in euros (items are shared: never mutate them)."""
    return {**order, "eur": round(order["amount"] * RATES_TO_EUR[order["currency"]], 2)}


def needs_review(order: Order) -> bool:
    return bool(order["eur"] >= 100)


async def serve_live_orders() -> None:
    """A service: the graph runs in the background while requests push orders into it."""
    env = LocalEnvironment("shop")
    orders = env.create_stream("orders")
    in_eur = orders.map(to_eur, name="to_eur")
    flagged = in_eur.filter(needs_review, name="review")
    revenue: dict[str, float] = {}

    def book(order: Order) -> None:
        revenue[order["customer"]] = round(revenue.get(order["customer"], 0.0) + order["eur"], 2)

    in_eur.key_by(lambda order: order["customer"], name="by_customer").sink(book, name="book")

    async with env.running():
        to_review = asyncio.ensure_future(flagged.collect())  # reads the live stream from now on
        for order in LIVE_ORDERS:  # in a real service: one emit per incoming request
            await orders.emit(order)
        await orders.close()
        for order in await to_review:
            print(f"review order {order['order_id']}: {order['eur']:.2f} EUR from {order['customer']}")

    print("revenue:", ", ".join(f"{name}={total:.2f}" for name, total in sorted(revenue.items())))
    metrics = env.metrics().operators
    print(f"to_eur saw {metrics['to_eur'].items_in} orders; review passed {metrics['review'].items_out}")
    print(f"the run has {env.lifecycle.value}")  # Lifecycle.FINISHED: every source read, every sink drained


async def replay_history() -> None:
    """The same steps over a finished batch: ``collect()`` runs the graph and returns the list."""
    env = LocalEnvironment("history")
    big = env.from_collection(HISTORY, name="history").map(to_eur).filter(lambda o: o["eur"] >= 90)
    print(f"history: {len(await big.collect())} of {len(HISTORY)} orders were 90 EUR or more")


async def main() -> None:
    await serve_live_orders()
    await replay_history()


if __name__ == "__main__":
    asyncio.run(main())
