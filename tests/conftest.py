"""Fixtures: one real broker per engine for the session, unique topics and a script runner per test.

Every test that takes ``broker``, ``bootstrap``, ``runner`` or ``engine`` runs
once per engine in ``KAFKA_ENGINES`` (default ``tansu,kafka``): Tansu, and
Apache Kafka 4 started from Maven Central's jars. Outside CI, an engine that
cannot start (no Java or Maven) skips its tests with the reason; with
``CI=true`` it fails them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from devbroker import ENGINES, BrokerError, DevBroker, dev_broker, free_port
from tests.kafka_helpers import ScriptRunner, Topics, engine_unavailable


def engines_under_test() -> list[str]:
    chosen = [name.strip() for name in os.environ.get("KAFKA_ENGINES", ",".join(ENGINES)).split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(ENGINES))
    if unknown or not chosen:
        raise pytest.UsageError(f"KAFKA_ENGINES={os.environ.get('KAFKA_ENGINES')!r}: choose from {', '.join(ENGINES)}")
    return chosen


@pytest.fixture(scope="session", params=engines_under_test())
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def broker(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevBroker]:
    log_path = tmp_path_factory.mktemp("broker") / f"{engine}.log"
    with log_path.open("wb") as output:
        session_broker = dev_broker(engine, free_port(), output=output)
        try:
            session_broker.start()
        except BrokerError as exc:
            engine_unavailable(engine, exc)
        try:
            yield session_broker
        finally:
            session_broker.stop()


@pytest.fixture
def start_broker(engine: str) -> Iterator:
    """Starts extra brokers of this test's engine (a test's own, e.g. to cut or kill it); stops them at teardown."""
    started: list[DevBroker] = []

    def start(port: int, **options) -> DevBroker:
        extra = dev_broker(engine, port, **options)
        try:
            extra.start()
        except BrokerError as exc:
            engine_unavailable(engine, exc)
        started.append(extra)
        return extra

    yield start
    for extra in started:
        extra.stop()


@pytest.fixture
def bootstrap(broker: DevBroker) -> str:
    return broker.bootstrap_servers


@pytest.fixture
def topics() -> Topics:
    return Topics.unique()


@pytest.fixture
def runner(request: pytest.FixtureRequest, bootstrap: str, topics: Topics, tmp_path: Path) -> Iterator[ScriptRunner]:
    script_runner = ScriptRunner(bootstrap, tmp_path, topics.env())
    yield script_runner
    script_runner.cleanup()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for script in script_runner.scripts:
            print(f"----- {script.name} (last lines) -----\n" + "\n".join(script.output().splitlines()[-40:]))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tag each broker test with its engine, for the per-engine summary."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        engine = callspec.params.get("engine") if callspec else None
        if engine is None and "kafka_cluster" in getattr(item, "fixturenames", ()):
            engine = "kafka"
        if engine is not None:
            item.user_properties.append(("engine", engine))


def pytest_terminal_summary(terminalreporter, exitstatus: int) -> None:
    """One line per engine: how many tests ran against a real broker of that engine, and how they ended."""
    outcomes: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            engine = dict(getattr(report, "user_properties", ())).get("engine")
            if engine and (report.when == "call" or outcome != "passed"):
                counts = outcomes.setdefault(engine, {})
                counts[outcome] = counts.get(outcome, 0) + 1
    for engine, counts in sorted(outcomes.items()):
        figures = ", ".join(f"{count} {outcome}" for outcome, count in counts.items())
        terminalreporter.write_line(f"broker tests on {engine}: {figures}")
