"""Fixtures: one real broker (Tansu) for the session, unique topics and a script runner per test."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from devbroker import DevBroker, free_port
from tests.kafka_helpers import ScriptRunner, Topics


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevBroker]:
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with log_path.open("wb") as output, DevBroker(free_port(), output=output) as dev_broker:
        yield dev_broker


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
