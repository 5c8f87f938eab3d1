"""The Compose file (validated without a Docker engine) and the one-command demo."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from devbroker import free_port, port_open
from devbroker.maven import kafka_version
from tests.kafka_helpers import ROOT, alive, descendants, read_json, scrape, wait_until


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (Debian package) is not installed")
@pytest.mark.parametrize("profile", [[], ["--profile", "monitoring"]], ids=["kafka", "monitoring"])
def test_compose_file_is_valid_and_binds_only_to_loopback(profile: list[str]):
    result = subprocess.run(["docker-compose", *profile, "config"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    published = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("- ") and ":" in line and "/tcp" in line]
    assert published, result.stdout
    assert all(line.startswith("- 127.0.0.1:") for line in published), published


def test_compose_runs_the_apache_kafka_version_the_suite_tests():
    images = re.findall(r"image:\s*(\S+)", (ROOT / "docker-compose.yml").read_text())
    assert images[0] == f"apache/kafka:{kafka_version()}"
    assert not any("zookeeper" in image or "cp-kafka" in image for image in images)


def test_compose_times_consumer_groups_as_the_suite_does():
    """The consumer protocol's dev timings (KIP-848) of the dev broker are the Compose broker's too."""
    dev = dict(re.findall(r'"(group\.consumer\.[a-z.]+)": (\d+)', (ROOT / "devbroker" / "kafka_config.py").read_text()))
    compose = dict(re.findall(r"KAFKA_(GROUP_CONSUMER_[A-Z_]+): (\d+)", (ROOT / "docker-compose.yml").read_text()))
    assert len(dev) == 4
    assert compose == {name.upper().replace(".", "_"): value for name, value in dev.items()}


def _free_port_run(count: int) -> int:
    """The first of ``count`` consecutive free ports, below the ephemeral range: there no client connection
    made meanwhile (the broker's, the scripts') can take one before its script binds it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        base = random.randrange(10_000, low - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue


@pytest.mark.integration
def test_demo_shows_all_three_paths_and_leaves_nothing_behind(tmp_path, engine: str):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{port}"
    log_path = tmp_path / "demo.log"
    metrics_base = _free_port_run(5)
    console_port = metrics_base + 4
    with log_path.open("w") as log:
        demo = subprocess.Popen(
            [sys.executable, "-m", "demo", "--engine", engine, "--rate", "10", "--invalid-rate", "0.1", "--state-dir", str(tmp_path),
             "--metrics-port", str(metrics_base), "--console-port", str(console_port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        try:
            output = lambda: log_path.read_text()
            wait_until(lambda: "Processed order" in output(), 60, what="the first processed order")
            wait_until(lambda: "(attempt 2)" in output(), 60, what="an order processed on a retry")
            wait_until(lambda: "Dead letter " in output() and "retries exhausted" in output(), 90,
                       what="dead letters shown by the DLQ consumer")
            wait_until(lambda: "out of retries: the retry consumer dead-letters it" in output(), 30,
                       what="the main consumer's line for a final failed attempt")
            assert (read_json(tmp_path / "summary.json") or {}).get("processed", 0) > 0
            main_metrics = metrics_base + 1
            first = scrape(main_metrics)["orders_processed_total"]
            wait_until(lambda: scrape(main_metrics)["orders_processed_total"] > first, 30, what="the processed counter to rise")
            assert f"http://127.0.0.1:{main_metrics}/metrics" in output()
            assert f"Dead-letter console: http://127.0.0.1:{console_port}" in output()
            summary = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{console_port}/api/summary", timeout=30).read())
            assert summary["processed"] > 0
            family = descendants(demo.pid)
            assert len(family) >= 6  # four scripts, the console and the broker
            demo.send_signal(signal.SIGINT)
            assert demo.wait(90) == 0, output()[-3000:]
        finally:
            demo.kill()
    text = log_path.read_text()
    for name in ("producer|", "main    |", "retry   |", "dlq     |", "console |"):
        assert name in text
    assert "Traceback" not in text
    assert not re.search(r"failed attempt 4 .*due in", text), "the last attempt announced as if it would be retried"
    wait_until(lambda: not alive(family), 30, what="every demo process to exit")
    assert not port_open("127.0.0.1", port)
