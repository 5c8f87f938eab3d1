"""The benchmark's table, JSON and picture, and quantiles from Prometheus histogram buckets. Pure."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional


@dataclass
class Figure:
    value: float
    unit: str
    ratio: Optional[float] = None
    limit: Optional[str] = None
    target: Optional[str] = None

    def as_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None or key == "ratio"}


def ratio(value: float, limit: float) -> float:
    return value / limit if limit else math.nan


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    index = min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))
    return ordered[index]


def histogram_quantile(buckets: dict[float, float], share: float) -> float:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket (cumulative counts by upper bound)."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total == 0:
        return math.nan
    rank = share * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / max(count - previous_count, 1e-12)
        previous_bound, previous_count = bound, count
    return bounds[-1]


def table(rows: list[tuple[str, Figure]]) -> str:
    lines = [f"{'measure':<44} {'value':>14} {'unit':<10} {'ratio':>7}  {'against':<34} target"]
    lines.append("-" * len(lines[0]))
    for name, figure in rows:
        value = f"{figure.value:,.0f}" if figure.value >= 100 else f"{figure.value:,.2f}"
        shown_ratio = "" if figure.ratio is None or math.isnan(figure.ratio) else f"{figure.ratio:.2f}"
        lines.append(f"{name:<44} {value:>14} {figure.unit:<10} {shown_ratio:>7}  {figure.limit or '':<34} {figure.target or ''}")
    return "\n".join(lines)


def plot(path: str, throughput: list[tuple[str, float, Optional[float]]], latency_buckets: dict[float, float], title: str) -> None:
    """Throughput bars beside their limits, and the end-to-end latency distribution."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit("--plot needs matplotlib: pip install -r requirements-bench.txt") from exc
    figure, (bars, hist) = plt.subplots(1, 2, figsize=(14, 5.5))
    names = [name for name, _, _ in throughput]
    positions = range(len(names))
    bars.barh([p + 0.2 for p in positions], [value for _, value, _ in throughput], height=0.4, label="measured")
    bars.barh([p - 0.2 for p in positions], [limit or 0 for _, _, limit in throughput], height=0.4, label="its limit",
              color="lightgray")
    bars.set_yticks(list(positions), names)
    bars.invert_yaxis()
    bars.set_xlabel("orders/s")
    bars.legend()
    bars.set_title("Throughput beside the matching limit")
    bounds = sorted(b for b in latency_buckets if not math.isinf(b))
    counts = [latency_buckets[b] - (latency_buckets[bounds[i - 1]] if i else 0) for i, b in enumerate(bounds)]
    hist.bar([f"≤{b * 1000:g}" for b in bounds], counts)
    hist.tick_params(axis="x", rotation=45)
    hist.set_xlabel("end-to-end latency bucket (ms), record timestamp → processed")
    hist.set_ylabel("orders")
    hist.set_title("End-to-end latency")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
