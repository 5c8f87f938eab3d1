"""Building Kafka clients, and reporting an unreachable broker in one line.

librdkafka reconnects by itself; what it lacks is a readable account of it.
Its own log lines go through Python logging, minus the per-attempt connection
failures, which :class:`BrokerStatus` reports once per outage instead.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from typing import Any, Callable, Iterable, Mapping, Optional, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from runtime.access import AccessDenied, denied, is_refusal, principal_of
from runtime.settings import KafkaSettings
from runtime.errors import ConfigError, FatalKafkaError

log = logging.getLogger(__name__)

_UNREACHABLE_CODES = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE}
# The Java client's partitioner (librdkafka's default is crc32): a key lands in the same
# partition whichever client wrote it, so our copies and re-drives sit beside a Java
# producer's records of the same key.
PRODUCER_BASE = {"partitioner": "murmur2_random"}
# Every producer of this project: no duplicates from its own retries, nothing acknowledged before it is replicated.
PRODUCER_ENFORCED = {"enable.idempotence": True, "acks": "all"}
# A group member that processes and copies: a partition never committed starts at its beginning, and
# rebalances are incremental, so a joining member does not stop the others.
GROUP_CONSUMER_DEFAULTS = {"auto.offset.reset": "earliest", "partition.assignment.strategy": "cooperative-sticky"}
# The same, draining backlogs at high rates in bounded memory: a prefetch queue bounded in records and bytes,
# and fetches of at most 2 MB per partition, 8 MB in all (a fetch response is held whole while any of its
# records waits). It fetches again 10 ms after the queue was full (not 1 s), and lets the broker hold an
# empty fetch 10 ms at most (Tansu waits it out, adding it to every record's latency).
DRAINING_CONSUMER_DEFAULTS = {
    **GROUP_CONSUMER_DEFAULTS,
    "fetch.max.bytes": 8_388_608, "max.partition.fetch.bytes": 2_097_152,
    "queued.max.messages.kbytes": 16_384, "queued.min.messages": 20_000,
    "fetch.queue.backoff.ms": 10, "fetch.wait.max.ms": 10,
}
_REPEAT_NOTICE_S = 30.0
_NODE = re.compile(r"(?P<address>[^\s/]+:\d+)/(?P<id>\d+): ")  # how librdkafka names a broker by its node id
WARM_UP_TIMEOUT_S = 5.0


# librdkafka names the topic a transaction may not write only in this log line; the transaction's own error does not.
_REFUSED_IN_TRANSACTION = re.compile(r'Failed to add partition "([^"]+)" \[\d+\] to transaction: (.*authorization failed.*)$')


class _ClientLogs(logging.Filter):
    """librdkafka's lines: those BrokerStatus reports itself are dropped, and so are role warnings of a shared
    file; a write refused inside a transaction becomes the status's refusal, with its topic."""

    def __init__(self, status: "BrokerStatus") -> None:
        super().__init__()
        self.status = status

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        refused = _REFUSED_IN_TRANSACTION.search(text)
        if refused:
            error = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, refused.group(2))
            self.status.refuse(denied(error, self.status.principal, "Write", refused.group(1)))
        if text.startswith("FAIL ") or "brokers are down" in text:
            return False
        return not (text.startswith("CONFWARN ") and ("consumer property" in text or "producer property" in text))


class BrokerStatus:
    """Says once, in one line, that the broker is unreachable (repeated at most every 30 s); keeps the first
    refusal and the first failure the clients' callbacks reported.

    Callbacks never raise (see :func:`guarded`): a refusal (failed authentication,
    a missing ACL) or a failure (a copy not delivered, a fatal client error) is
    kept, and :meth:`check` raises it where the script can stop.
    """

    def __init__(self, bootstrap_servers: str, principal: str = "this client's principal") -> None:
        self.bootstrap_servers = bootstrap_servers
        self.principal = principal
        self.refused: Optional[AccessDenied] = None
        self.failed: Optional[Exception] = None
        self._last_notice = float("-inf")

    def refuse(self, refusal: AccessDenied) -> None:
        """Keep the first refusal: a secondary one never hides it."""
        if self.refused is None:
            self.refused = refusal

    def fail(self, failure: Exception) -> None:
        """Keep the first failure that stops the script; a refusal reported alongside is raised first."""
        if isinstance(failure, AccessDenied):
            self.refuse(failure)
        elif self.failed is None:
            self.failed = failure

    def check(self) -> None:
        """Raise the first refusal the clients reported, else their first failure, if any."""
        if self.refused is not None:
            raise self.refused
        if self.failed is not None:
            raise self.failed

    def unreachable(self, detail: str) -> None:
        """``detail``: librdkafka's text, which starts with the node it is about (``host:port/id: ...``)."""
        if not self._notice_due():
            return
        node = _NODE.match(detail)
        if node and "," in self.bootstrap_servers:  # one node of a cluster: the others serve meanwhile
            log.warning("Kafka broker %s (node %s) is not reachable (%s); retrying, the cluster's other brokers "
                        "serve meanwhile", node["address"], node["id"], _short(detail))
        else:
            log.warning("Kafka broker at %s is not reachable (%s); retrying", self.bootstrap_servers, _short(detail))

    def waiting(self, what: str, detail: str) -> None:
        """A call that failed for a fault that passes: one line, then at most one every 30 s."""
        if self._notice_due():
            log.warning("Could not %s (%s); retrying", what, detail)

    def _notice_due(self) -> bool:
        """Whether the one line of an ongoing fault is due: its first, or 30 s after the last."""
        now = time.monotonic()
        if now - self._last_notice < _REPEAT_NOTICE_S:
            return False
        self._last_notice = now
        return True

    def reachable(self) -> None:
        if self._last_notice != float("-inf"):
            log.info("Kafka broker at %s is reachable again", self.bootstrap_servers)
        self._last_notice = float("-inf")

    def error_cb(self, error: KafkaError, on_fatal: Optional[Callable[[KafkaError], None]] = None) -> None:
        """``on_fatal``: the owner of a client that can be replaced (a transactional producer); others stop."""
        if is_refusal(error):
            self.refuse(denied(error, self.principal))
        elif error.code() in _UNREACHABLE_CODES:
            if self.refused is not None:
                return  # it is reachable, and refuses: the refusal is the line to read
            self.unreachable(error.str())
        elif error.fatal() and on_fatal is not None:
            on_fatal(error)
        elif error.fatal():
            self.fail(fatal_error(error))
        elif error.code() == KafkaError._FENCED:
            log.warning("Kafka client error: %s (the open transaction is void; it is renewed at the next commit)",
                        error.str())
        else:
            log.warning("Kafka client error: %s", error.str())


Callback = TypeVar("Callback", bound=Callable[..., None])


def guarded(status: BrokerStatus, callback: Callback) -> Callback:
    """``callback`` for a Kafka client, keeping what it raises in ``status`` instead of raising it.

    An exception raised inside a client callback stays pending while the client
    calls its next one (its logger), which then fails with ``SystemError``
    (confluent-kafka 2.16.1): the script's loop raises it from ``status.check()``.
    """

    @functools.wraps(callback)
    def call(*args: Any) -> None:
        try:
            callback(*args)
        except Exception as failure:
            status.fail(failure)

    return call  # type: ignore[return-value]


def fatal_error(error: KafkaError) -> FatalKafkaError:
    """The one line for a client that can no longer work; a fenced transactional producer says why."""
    if error.code() == KafkaError._FENCED:
        return FatalKafkaError(
            f"this instance was fenced ({error.str()}): it stalled past its transaction timeout and its partitions "
            "moved to another member; nothing it wrote since its last commit is visible. Restart it to rejoin"
        )
    return FatalKafkaError(f"fatal Kafka client error: {error.str()}")


def _short(detail: str) -> str:
    return detail.split(": ", 1)[-1] if ": " in detail else detail


class Clients:
    """Builds producers, consumers and admin clients from the user's settings."""

    def __init__(self, settings: KafkaSettings, client_id: str) -> None:
        self.settings = settings
        self.client_id = client_id
        self.status = BrokerStatus(settings.bootstrap_servers, principal_of(dict(settings.properties)))
        self.log = logging.getLogger(f"kafka.client.{client_id}")
        for earlier in [f for f in self.log.filters if isinstance(f, _ClientLogs)]:
            self.log.removeFilter(earlier)  # the latest Clients of this id owns its lines
        self.log.addFilter(_ClientLogs(self.status))
        self._broker_settings: Optional[dict[str, Optional[str]]] = None
        self._admin: Optional[AdminClient] = None

    def _config(self, defaults: Mapping[str, Any], enforced: Mapping[str, Any],
                on_fatal: Optional[Callable[[KafkaError], None]] = None) -> dict[str, Any]:
        base = {"client.id": self.client_id, **defaults}
        config = self.settings.client_config(base, enforced)
        config["error_cb"] = guarded(self.status, functools.partial(self.status.error_cb, on_fatal=on_fatal))
        config["logger"] = self.log
        return config

    def _build(self, factory: Callable[[dict[str, Any]], Any], config: dict[str, Any]) -> Any:
        try:
            return factory(config)
        except KafkaException as exc:
            raise ConfigError(f"invalid Kafka client setting: {exc.args[0].str()}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid Kafka client setting: {exc}") from None

    def producer(
        self, defaults: Mapping[str, Any] = {}, enforced: Mapping[str, Any] = {}, warm_up: Iterable[str] = (),
        on_fatal: Optional[Callable[[KafkaError], None]] = None,
    ) -> Producer:
        """A producer; with ``warm_up`` topics, connected and holding their metadata before it returns.

        Without that, librdkafka looks the topic up on the first ``produce()``
        and the first records wait for the answer. ``on_fatal``: told of a fatal
        error instead of stopping the script (a transactional producer is replaced).
        """
        producer = self._build(Producer, self._config({**PRODUCER_BASE, **defaults}, enforced, on_fatal))
        for topic in warm_up:
            try:
                producer.list_topics(topic, timeout=WARM_UP_TIMEOUT_S)
            except KafkaException as exc:
                log.debug("No metadata for %s yet (%s); the first records will wait for it", topic, exc.args[0].str())
        return producer

    def consumer(self, defaults: Mapping[str, Any] = {}, enforced: Mapping[str, Any] = {},
                 without: Iterable[str] = ()) -> Consumer:
        """A consumer; ``without``: keys dropped from every layer (settings the chosen group protocol refuses)."""
        config = self._config(defaults, enforced)
        for key in without:
            config.pop(key, None)
        return self._build(Consumer, config)

    def admin(self) -> AdminClient:
        """One admin client per instance, connected once: a new one per look-up costs a connection each time
        (start-up and every take-over make several). Thread-safe; it goes with this instance."""
        if self._admin is None:
            self._admin = self._build(AdminClient, self._config({}, {}))
        return self._admin

    def broker_settings(self) -> dict[str, Optional[str]]:
        """One broker's settings (the lowest node id), read once: the guarantee and the group protocol both ask.
        Raises a refusal where the principal may not describe the cluster."""
        if self._broker_settings is None:
            admin = self.admin()
            brokers = admin.list_topics(timeout=15).brokers
            resource = ConfigResource(ConfigResource.Type.BROKER, str(min(brokers)))
            [future] = admin.describe_configs([resource], request_timeout=15).values()
            self._broker_settings = {name: entry.value for name, entry in future.result().items()}
        return self._broker_settings


# Errors of a broker fault that passes: a node down, a leader or coordinator moving or loading, a request timed out.
_TRANSIENT_CODES = _UNREACHABLE_CODES | {
    KafkaError._TIMED_OUT, KafkaError._WAIT_COORD, KafkaError.REQUEST_TIMED_OUT, KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.NOT_ENOUGH_REPLICAS,
}
T = TypeVar("T")


def is_transient(error: KafkaError) -> bool:
    """Whether waiting can help: never for a refusal or a fatal error."""
    return not is_refusal(error) and not error.fatal() and (error.retriable() or error.code() in _TRANSIENT_CODES)


def patiently(call: Callable[[], T], status: BrokerStatus, what: str,
              should_stop: Callable[[], bool] = lambda: False, retry_interval_s: float = 2.0) -> Optional[T]:
    """``call()``, again after each transient error (said in one line, at most every 30 s); None if asked to stop.

    Every admin and client call this project makes is bounded by its own
    timeout; this is what turns a broker fault during one into a wait, not an exit.
    """
    while not should_stop():
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0]
            status.check()  # the error callback may know the cause: a refusal
            if not is_transient(error):
                raise
            status.waiting(what, _short(error.str()))
            wait_unless_stopped(retry_interval_s, should_stop)
    return None


def wait_unless_stopped(seconds: float, should_stop: Callable[[], bool]) -> None:
    """Wait up to ``seconds``, returning early once a stop is requested."""
    deadline = time.monotonic() + seconds
    while not should_stop() and time.monotonic() < deadline:
        time.sleep(0.1)  # poll for the stop flag
