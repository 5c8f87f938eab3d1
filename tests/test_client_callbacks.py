"""Client callbacks never raise: what goes wrong inside one is kept, and the loop raises it where the script can stop."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError, Producer

from devbroker import free_port
from runtime.access import AccessDenied
from runtime.clients import BrokerStatus, guarded
from runtime.errors import FatalKafkaError


def fatal(code: int = KafkaError._FENCED) -> KafkaError:
    return KafkaError(code, "Fatal transaction error: fenced by newer producer instance", fatal=True)


def test_a_fatal_error_is_kept_for_the_loop_not_raised_inside_the_callback() -> None:
    status = BrokerStatus("localhost:9092")
    status.error_cb(fatal())
    with pytest.raises(FatalKafkaError, match="fenced"):
        status.check()


def test_a_fatal_error_of_a_replaceable_client_goes_to_its_owner_and_stops_nothing() -> None:
    status, told = BrokerStatus("localhost:9092"), []
    status.error_cb(fatal(), on_fatal=told.append)
    status.check()
    assert [error.code() for error in told] == [KafkaError._FENCED]


def test_the_first_failure_is_kept_and_a_refusal_is_raised_before_it() -> None:
    status = BrokerStatus("localhost:9092")
    status.fail(FatalKafkaError("first"))
    status.fail(FatalKafkaError("second"))
    with pytest.raises(FatalKafkaError, match="first"):
        status.check()
    status.fail(AccessDenied("refused"))
    with pytest.raises(AccessDenied, match="refused"):
        status.check()


def test_a_guarded_callback_keeps_what_it_raises() -> None:
    status = BrokerStatus("localhost:9092")

    def report(err: object, msg: object) -> None:
        raise ValueError("bad report")

    guarded(status, report)(None, None)
    with pytest.raises(ValueError, match="bad report"):
        status.check()


def test_a_raising_delivery_report_leaves_flush_and_the_logger_working(caplog: pytest.LogCaptureFixture) -> None:
    """The failure reaches the script through ``status.check()``; flush() returns normally, and so do the
    client's log lines served after it."""
    status, reports = BrokerStatus("nobody"), []

    def report(err: KafkaError, _msg: object) -> None:
        reports.append(err)
        raise FatalKafkaError(f"copy not delivered ({err.str()})")

    nobody_listens = f"127.0.0.1:{free_port()}"
    producer = Producer({"bootstrap.servers": nobody_listens, "message.timeout.ms": 300, "debug": "msg",
                         "logger": logging.getLogger("kafka.client.test"), **{"enable.idempotence": True}})
    for _ in range(5):
        producer.produce("orders_retry", b"value", on_delivery=guarded(status, report))
    with caplog.at_level(logging.DEBUG, logger="kafka.client.test"):
        assert producer.flush(30) == 0
        producer.poll(0.5)
    assert len(reports) == 5, "every report ran, none was cut short by an earlier one"
    with pytest.raises(FatalKafkaError, match="copy not delivered"):
        status.check()


def test_an_unreachable_node_of_a_cluster_is_named_and_a_lone_broker_as_before(caplog: pytest.LogCaptureFixture) -> None:
    error = KafkaError(KafkaError._TRANSPORT, "127.0.0.1:9094/2: Connect to ipv4#127.0.0.1:9094 failed: Connection refused")
    with caplog.at_level(logging.WARNING, logger="runtime.clients"):
        BrokerStatus("127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094").error_cb(error)
        BrokerStatus("localhost:9092").error_cb(error)
    cluster, lone = [record.getMessage() for record in caplog.records]
    assert cluster.startswith("Kafka broker 127.0.0.1:9094 (node 2) is not reachable (Connect to ipv4#127.0.0.1:9094")
    assert lone.startswith("Kafka broker at localhost:9092 is not reachable (Connect to ipv4#127.0.0.1:9094")
