"""Copies made in a child process, so that the consumer's thread only hands them over.

A copy costs its maker several times what decoding a record costs (its
headers, ``produce()`` with them, the delivery report), all on the one thread
that also decodes every record; ``docs/performance.md`` measures what moving
them out gains. :class:`RoutingWorker` is the same :class:`runtime.routing.Copies`
as an in-thread :class:`Router`: it collects the records to copy, sends each
batch through a pipe to a child process running a :class:`Router` with its
own producer, and hands the acknowledgements that come back to ``on_acked``,
exactly as the delivery reports of an in-thread Router would. So the rule
stays the same: a source record's offset moves only once its copy is
acknowledged, and a flush (:meth:`RoutingWorker.flush`) returns only when
every copy handed over is acknowledged or the time is up.

The child ignores SIGINT and SIGTERM (a Ctrl+C reaches the whole process
group; the parent shuts down in order and then tells it to stop) and ends
with its parent, even after a kill -9. If it dies, the parent stops with an
error; nothing is lost, since no offset moved past a copy not acknowledged.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import signal
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from confluent_kafka import Message

from runtime.clients import Clients
from runtime.errors import PipelineError
from runtime.logs import setup_logging
from runtime.provenance import Source
from runtime.routing import AckCallback, HeaderRecipe, Router, TooLargeRecipe
from runtime.settings import KafkaSettings
from runtime.shutdown import die_with_parent

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PIPE_BYTES = 1 << 20
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
_IDLE_WAIT_S = 0.1
_BUSY_WAIT_S = 0.002


# What the child needs of a consumed record to copy it (a ``Message`` does not pickle): topic, partition,
# offset, timestamp, key, value, headers. Plain tuples: a NamedTuple pickles through a Python call.
Record = tuple[str, int, int, tuple[int, int], Optional[bytes], Optional[bytes], Optional[list[tuple[str, bytes]]]]


def record_of(msg: Message) -> Record:
    return msg.topic(), msg.partition(), msg.offset(), msg.timestamp(), msg.key(), msg.value(), msg.headers()


def message_of(record: Record) -> Message:
    topic, partition, offset, timestamp, key, value, headers = record
    return Message(topic=topic, partition=partition, offset=offset, timestamp=timestamp, key=key, value=value,
                   headers=headers)


@dataclass(frozen=True)
class WorkerSpec:
    """What the child needs to make the copies the parent hands it."""

    kafka: KafkaSettings
    client_id: str
    dead_letter_topic: str
    too_large: TooLargeRecipe
    warm_up: tuple[str, ...]
    producer_defaults: Mapping[str, Any] = field(default_factory=dict)
    producer_enforced: Mapping[str, Any] = field(default_factory=dict)
    log_level: str = "INFO"


class RoutingWorker:
    """The consumer's side: :meth:`copy` and :meth:`redrive` collect, :meth:`serve` hands over once per loop."""

    def __init__(self, spec: WorkerSpec, on_acked: AckCallback) -> None:
        # A fresh interpreter (never a fork of a process whose client threads run), fed through two pipes.
        commands_read, commands_write = os.pipe()
        replies_read, replies_write = os.pipe()
        for fd in (commands_write, replies_write):
            _enlarge_pipe(fd)
        # The project on the child's path, whatever the working directory (which stays, for relative --config paths).
        path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(commands_read), str(replies_write), str(os.getpid())],
            pass_fds=(commands_read, replies_write), stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": path},
        )
        os.close(commands_read)
        os.close(replies_write)
        self._commands = Connection(commands_write, readable=False)
        self._replies = Connection(replies_read, writable=False)
        self.on_acked = on_acked
        self._batch: list[tuple[Record, str, Optional[HeaderRecipe], tuple[Any, ...]]] = []
        self._handed_over = 0
        self._acknowledged = 0
        self._flushed: Optional[int] = None
        self._send(("start", spec))
        if not self._replies.poll(START_TIMEOUT_S):
            self.close()
            raise PipelineError(f"the routing worker did not start within {START_TIMEOUT_S:.0f} s")
        self._receive(expect="ready")

    def copy(self, msg: Message, topic: str, recipe: HeaderRecipe, *args: Any) -> None:
        self._batch.append((record_of(msg), topic, recipe, args))

    def redrive(self, msg: Message, topic: str) -> None:
        self._batch.append((record_of(msg), topic, None, ()))

    @property
    def pid(self) -> int:
        """The child's process id (for measuring it)."""
        return self._process.pid

    def __len__(self) -> int:
        """Copies handed over or collected, not yet acknowledged."""
        return self._handed_over + len(self._batch) - self._acknowledged

    def serve(self) -> None:
        """Hand this loop's copies over, take the acknowledgements that came back (never waits)."""
        self._hand_over()
        while self._replies.poll():
            self._receive()

    def poll(self, timeout_s: float) -> int:
        """Hand copies over and take acknowledgements, waiting up to ``timeout_s`` for the first; how many came."""
        before = self._acknowledged
        self._hand_over()
        if self._replies.poll(timeout_s):
            self.serve()
        return self._acknowledged - before

    def flush(self, timeout_s: float) -> int:
        """Wait until every copy is acknowledged; return how many are not (0: all are)."""
        self._hand_over()
        self._flushed = None
        self._send(("flush", timeout_s))
        while self._flushed is None:
            self._receive()
        return self._flushed

    def close(self) -> None:
        """Stop the child after its last copies are acknowledged (the caller flushed them already)."""
        if self._process.poll() is None:
            with contextlib.suppress(OSError):  # it ended meanwhile: nothing left to tell it
                self._commands.send(("stop", None))
        try:
            self._process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._commands.close()
        self._replies.close()

    def _hand_over(self) -> None:
        if self._batch:
            self._send(("route", self._batch))
            self._handed_over += len(self._batch)
            self._batch = []

    def _send(self, command: tuple[str, Any]) -> None:
        try:
            self._commands.send(command)
        except OSError:
            raise self._ended() from None

    def _ended(self) -> PipelineError:
        """Why the child is gone: its own last word if it sent one (a secondary error never hides the first)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(1.0)
        with contextlib.suppress(EOFError, OSError):
            while self._replies.poll():
                kind, payload = self._replies.recv()
                if kind == "failed":
                    return PipelineError(f"the routing worker failed: {payload}")
        return PipelineError(f"the routing worker ended (exit code {self._process.returncode}); "
                             "copies not acknowledged are made again after a restart")

    def _receive(self, expect: Optional[str] = None) -> None:
        try:
            kind, payload = self._replies.recv()
        except (EOFError, OSError):
            raise self._ended() from None
        if kind == "acked":
            on_acked = self.on_acked
            for source, copy in payload:
                on_acked(source, copy)
            self._acknowledged += len(payload)
        elif kind == "flushed":
            self._flushed = payload
        elif kind == "failed":
            raise PipelineError(f"the routing worker failed: {payload}")
        elif kind != expect:
            raise PipelineError(f"unexpected reply from the routing worker: {kind}")


def _enlarge_pipe(fd: int) -> None:
    """Room for a few batches (Linux: 64 KB by default), so that a send never waits for the reader to get its turn."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or above the user's limit: keep the default
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def serve(commands: Connection, replies: Connection, parent_pid: int) -> None:
    """The child: a Router with its own producer, fed batches through ``commands``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent(signal.SIGKILL)  # at once: a copy landing after the next owner's scan would be made twice
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the line above
    try:
        _start, spec = commands.recv()
    except EOFError:
        os._exit(1)
    setup_logging(spec.log_level)
    # The command reader gets the GIL within 0.2 ms (5 ms by default) of a send, so the parent never waits long.
    sys.setswitchinterval(0.0002)
    try:
        _route_until_stopped(commands, replies, spec)
    except Exception as exc:  # the parent says it in one line and stops
        replies.send(("failed", f"{type(exc).__name__}: {exc}"))


def _route_until_stopped(commands: Connection, replies: Connection, spec: WorkerSpec) -> None:
    clients = Clients(spec.kafka, spec.client_id)
    producer = clients.producer(spec.producer_defaults, spec.producer_enforced, warm_up=spec.warm_up)
    acked: list[tuple[Source, Source]] = []
    router = Router(producer, spec.dead_letter_topic, spec.too_large, lambda source, copy: acked.append((source, copy)),
                    clients.status)
    inbox: queue.SimpleQueue[Optional[tuple[str, Any]]] = queue.SimpleQueue()
    # A thread reads the pipe at all times, so the parent never blocks on a send while this loop does.
    threading.Thread(target=_read_commands, args=(commands, inbox), daemon=True).start()
    replies.send(("ready", None))
    while True:
        try:
            command = inbox.get(timeout=_BUSY_WAIT_S if len(producer) or acked else _IDLE_WAIT_S)
        except queue.Empty:
            command = ("idle", None)
        if command is None:
            os._exit(1)  # the parent is gone: stop at once, as it did (the next owner finds what landed)
        kind, payload = command
        if kind == "route":
            for record, topic, recipe, args in payload:
                if recipe is None:
                    router.redrive(message_of(record), topic)
                else:
                    router.copy(message_of(record), topic, recipe, *args)
        elif kind in ("flush", "stop"):
            remaining = producer.flush(payload if kind == "flush" else STOP_TIMEOUT_S)
            _send_acked(replies, acked)
            if kind == "stop":
                return
            replies.send(("flushed", remaining))
        producer.poll(0)
        _send_acked(replies, acked)


def _read_commands(commands: Connection, inbox: "queue.SimpleQueue[Optional[tuple[str, Any]]]") -> None:
    try:
        while True:
            inbox.put(commands.recv())
    except (EOFError, OSError):
        inbox.put(None)


def _send_acked(replies: Connection, acked: list[tuple[Source, Source]]) -> None:
    if acked:
        replies.send(("acked", acked[:]))
        acked.clear()


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False), int(sys.argv[3]))
