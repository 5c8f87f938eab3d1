"""Prometheus metrics, the dashboard, and the monitoring profile's configuration."""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devbroker import free_port
from tests.kafka_helpers import ROOT, ScriptRunner, Topics, create_topics, read_all, read_json, scrape, wait_until
from tests.pipeline_expectations import write_foreign_orders

pytestmark = pytest.mark.integration


def total(samples: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in samples.items() if k == prefix or k.startswith(prefix + "{"))


def test_metrics_and_dashboard_agree_with_the_summary(runner: ScriptRunner, topics: Topics, bootstrap: str, tmp_path: Path):
    create_topics(bootstrap, topics.pipeline())
    batch = write_foreign_orders(bootstrap, topics.orders, 600, random.Random(12))
    summary_path = tmp_path / "summary.json"
    main_port, retry_port = free_port(), free_port()
    runner.start("consumer.main_consumer", "--fail-rate", "0.1", "--fail-product", "Item3", "--summary-file",
                 str(summary_path), "--metrics-port", str(main_port), "--backoff-base", "0.2", "--backoff-max", "0.8")
    runner.start("retry.retry_consumer", "--metrics-port", str(retry_port), "--backoff-base", "0.2", "--backoff-max", "0.8")

    def quiet() -> bool:
        summary = read_json(summary_path) or {}
        dead = len(read_all(bootstrap, topics.dlq))
        return summary.get("processed", 0) + dead - len(batch.poison) == len(batch.valid) and summary.get("processed", 0) > 0

    runner.wait_until(quiet, 120, what="the pipeline to go quiet")

    def lag_zero_and_published() -> tuple[dict[str, float], dict] | None:
        """The metrics and the summary file are published at the same tick: wait for one where they agree."""
        summary = read_json(summary_path)
        samples = scrape(main_port)
        lags = [v for k, v in samples.items() if k.startswith("orders_consumer_lag_records{")]
        published = (samples.get("orders_processed_total"), total(samples, "orders_routed_to_retry_total"),
                     total(samples, "orders_dead_lettered_total"))
        if lags and max(lags) == 0 and published == (summary["processed"], summary["retried"], summary["dead_lettered"]):
            return samples, summary
        return None

    samples, summary = runner.wait_until(lag_zero_and_published, 30, what="metrics to agree with the summary, lag 0")
    assert math.isclose(samples["orders_running_average_price"], summary["average"], rel_tol=1e-12)
    assert samples["orders_running_average_count"] == summary["processed"]
    assert samples["orders_end_to_end_latency_seconds_count"] > 0
    assert samples["orders_processing_seconds_count"] > 0
    retry_samples = scrape(retry_port)
    assert retry_samples["orders_retry_lateness_seconds_count"] > 0
    assert retry_samples["orders_redriven_total"] > 0
    assert not any("orderId" in key or batch.valid[0]["orderId"] in key for key in samples)

    result = runner.run("dashboard", "--once", "--json", "--interval", "0.5")
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    assert snapshot["processed"] == summary["processed"]
    assert math.isclose(snapshot["average"], summary["average"], rel_tol=1e-9)
    assert snapshot["dlq_total"] == len(read_all(bootstrap, topics.dlq))
    assert set(snapshot["dlq_by_reason"]) >= {"undecodable", "invalid order", "retries exhausted"}
    assert all(lag == 0 for lag in snapshot["lag"][runner.env()["MAIN_GROUP_ID"]].values())
    text = runner.run("dashboard", "--once", "--interval", "0.5").stdout
    assert f"DLQ total: {snapshot['dlq_total']}" in text and "Running average:" in text and "Lag:" in text


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_live_view_renders_in_a_terminal_and_survives_a_missing_broker(runner: ScriptRunner, topics: Topics, bootstrap: str, tmp_path: Path):
    create_topics(bootstrap, topics.pipeline())
    write_foreign_orders(bootstrap, topics.orders, 20, random.Random(1))
    runner.start("consumer.main_consumer", "--fail-rate", "0")
    session = f"dash-{free_port()}"
    dead_port = free_port()
    env = runner.env()
    exports = " ".join(f"{k}='{v}'" for k, v in env.items() if k.startswith(("KAFKA_", "ORDERS_", "RETRY_", "DLQ_", "STATS_", "MAIN_")))
    try:
        for name, bootstrap_servers in ((session, bootstrap), (session + "-down", f"127.0.0.1:{dead_port}")):
            subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "160", "-y", "50",
                            f"cd {ROOT} && env {exports} KAFKA_BOOTSTRAP_SERVERS={bootstrap_servers} {sys.executable} -m dashboard; sleep 30"],
                           check=True)

        def pane(name: str) -> str:
            return subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout

        wait_until(lambda: "DLQ:" in pane(session) and "Running average" in pane(session), 60, what="the live view")
        wait_until(lambda: "unreachable" in pane(session + "-down"), 60, what="the broker-down notice")
        for name in (session, session + "-down"):
            assert "Traceback" not in pane(name)
    finally:
        for name in (session, session + "-down"):
            subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
def test_prometheus_config_is_valid():
    result = subprocess.run(["promtool", "check", "config", str(ROOT / "monitoring" / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_dashboard_loads_and_queries_our_metrics():
    dashboard = json.loads((ROOT / "monitoring" / "grafana" / "dashboards" / "kafka-orders.json").read_text())
    assert dashboard["uid"] == "kafka-orders" and dashboard["panels"]
    from prometheus_client.metrics import MetricWrapperBase

    from app import metrics

    names = {m.describe()[0].name for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    assert len(names) >= 10
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "prometheus"
        for target in panel["targets"]:
            assert any(name in target["expr"] for name in names), target["expr"]
