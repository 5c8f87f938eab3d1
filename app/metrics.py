"""The pipeline's Prometheus metrics, served by ``--metrics-port`` (off unless given).

Names follow Prometheus conventions (``*_total`` counters, ``*_seconds``
histograms, base units) and labels stay low-cardinality: stages, reasons,
error classes and partitions, never an orderId or an error message. The
loops count in plain integers; these objects are fed by each script's
observer once per tick (see :class:`runtime.metrics.CounterSync`).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from runtime.metrics import LATENCY_BUCKETS, PROCESSING_BUCKETS

PRODUCED = Counter("orders_produced_total", "Records handed to the producer (orders and poison)")
DELIVERED = Counter("orders_delivered_total", "Records the broker acknowledged")
DELIVERY_FAILED = Counter("orders_delivery_failed_total", "Records whose delivery failed")

PROCESSED = Counter("orders_processed_total", "Orders counted in the running average")
ROUTED_TO_RETRY = Counter("orders_routed_to_retry_total", "Records sent to the retry topic", ["stage", "error_class"])
DEAD_LETTERED = Counter("orders_dead_lettered_total", "Records sent to the DLQ", ["reason"])
REDRIVEN = Counter("orders_redriven_total", "Retries re-driven to the orders topic")
REPLAYED = Counter("orders_replayed_total", "Dead letters replayed to the orders topic by an operator")
DEAD_LETTERS_SHOWN = Counter("orders_dead_letters_shown_total", "Dead letters shown by the DLQ consumer", ["reason"])

RUNNING_AVERAGE = Gauge("orders_running_average_price", "The running average of price over processed orders")
RUNNING_COUNT = Gauge("orders_running_average_count", "Orders in the running average (all partitions)")
CONSUMER_LAG = Gauge("orders_consumer_lag_records", "Records behind the end of each assigned partition", ["topic", "partition"])
RETRY_WAITING = Gauge("orders_retry_waiting_records", "Records waiting in memory for their retry to be due")

PROCESSING_SECONDS = Histogram("orders_processing_seconds", "Time to decode, validate and process one record",
                               buckets=PROCESSING_BUCKETS)
END_TO_END_SECONDS = Histogram("orders_end_to_end_latency_seconds", "Record timestamp to processed",
                               buckets=LATENCY_BUCKETS)
RETRY_LATENESS_SECONDS = Histogram("orders_retry_lateness_seconds", "Actual re-drive time minus due time",
                                   buckets=LATENCY_BUCKETS)
