"""The dashboard as plain text, as JSON, and as a rich renderable. Pure: no Kafka here."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Optional

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dashboard.collect import Snapshot
from domain.dead_letters import format_time_ms

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - low) / span * (len(SPARK) - 1)))] for v in values)


def _due(due_ms: Optional[int]) -> str:
    if due_ms is None:
        return "none"
    delta = due_ms / 1000 - time.time()
    return f"{format_time_ms(due_ms)} ({'in %.1f s' % delta if delta > 0 else 'due now'})"


def as_json(snapshot: Snapshot) -> dict[str, Any]:
    return asdict(snapshot)


def lines(snapshot: Snapshot, topics: dict[str, str]) -> list[str]:
    rate = lambda role: snapshot.rates.get(topics[role], 0.0)  # noqa: E731
    average = "n/a" if snapshot.average is None else f"{snapshot.average:.4f}"
    out = [
        f"Rates (records/s): {topics['orders']} {rate('orders'):.1f} | {topics['retry']} (retried) {rate('retry'):.1f} | "
        f"{topics['dlq']} (dead-lettered) {rate('dlq'):.1f}",
        f"Running average: {average} over {snapshot.processed} orders  {sparkline(snapshot.average_history)}",
        f"Retry backlog: {snapshot.retry_waiting} record(s) in {topics['retry']}; next due: {_due(snapshot.next_retry_due_ms)}",
        f"DLQ total: {snapshot.dlq_total} ("
        + (", ".join(f"{reason}: {count}" for reason, count in sorted(snapshot.dlq_by_reason.items())) or "empty") + ")",
    ]
    out += [f"  last: key={d['key']} reason={d['reason']} error={d['error']}" for d in snapshot.last_dead_letters]
    out.append("Lag:")
    for group, partitions in snapshot.lag.items():
        out.append(f"  {group}: " + (" ".join(f"{p}={lag}" for p, lag in partitions.items()) or "no commits yet"))
    return out


def rich_view(snapshot: Optional[Snapshot], topics: dict[str, str], status: str) -> Group:
    header = Text(status, style="bold red" if "unreachable" in status else "bold green")
    if snapshot is None:
        return Group(header, Text("waiting for the first snapshot…"))
    rates = Table(title="Rates (records/s)", expand=True)
    for role, label in (("orders", "orders in"), ("retry", "retried"), ("dlq", "dead-lettered")):
        rates.add_column(f"{label}\n{topics[role]}", justify="right")
    rates.add_row(*(f"{snapshot.rates.get(topics[r], 0.0):.1f}" for r in ("orders", "retry", "dlq")))
    average = "n/a" if snapshot.average is None else f"{snapshot.average:.4f}"
    avg_panel = Panel(f"[bold]{average}[/] over {snapshot.processed} orders\n{sparkline(snapshot.average_history)}",
                      title="Running average")
    retry_panel = Panel(f"{snapshot.retry_waiting} waiting · next due {_due(snapshot.next_retry_due_ms)}", title="Retry backlog")
    dlq = Table(title=f"DLQ: {snapshot.dlq_total} total "
                + " ".join(f"[{reason}: {count}]" for reason, count in sorted(snapshot.dlq_by_reason.items())), expand=True)
    dlq.add_column("key")
    dlq.add_column("reason")
    dlq.add_column("error")
    for dead in snapshot.last_dead_letters:
        dlq.add_row(dead["key"], dead["reason"], dead["error"])
    lag = Table(title="Lag per group and partition", expand=True)
    lag.add_column("group")
    lag.add_column("partitions")
    for group, partitions in snapshot.lag.items():
        lag.add_row(group, " ".join(f"{p}={n}" for p, n in partitions.items()) or "no commits yet")
    return Group(header, rates, avg_panel, retry_panel, dlq, lag)
