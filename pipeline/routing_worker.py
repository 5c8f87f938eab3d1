"""Routed copies made in a child process, so that the consumer's thread only hands them over.

A copy costs its maker about 15 µs of Python and client work: the context
headers, ``produce()`` with them, the delivery report. At 10 % failures
that was more than decoding ten records, on the one thread that also has to
decode every record. :class:`RoutingWorker` takes the :class:`Router`'s
place in the consumer: it collects the records to copy, sends each batch
through a pipe to a child process running a :class:`Router` with its own
producer, and hands the acknowledgements that come back to ``on_acked``,
exactly as the delivery reports of an in-process Router would. So the rule
stays the same: a source record's offset moves only once its copy is
acknowledged, and a flush (:meth:`RoutingWorker.flush`) returns only when
every copy handed over is acknowledged or the time is up.

The child ignores SIGINT and SIGTERM (a Ctrl+C reaches the whole process
group; the parent shuts down in order and then tells it to stop) and ends
with its parent, even after a kill -9. If it dies, the parent stops with an
error; nothing is lost, since no offset moved past a copy not acknowledged.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import queue
import signal
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Mapping, Optional

from confluent_kafka import Message

from pipeline.clients import Clients
from pipeline.config import ClientSettings
from pipeline.errors import PipelineError
from pipeline.headers import Failure
from pipeline.logs import setup_logging
from pipeline.routing import AckCallback, Router, Source
from pipeline.shutdown import die_with_parent

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


class RoutingWorker:
    """The consumer's side: the Router's ``send_*`` calls, then :meth:`serve` once per loop."""

    def __init__(self, args: argparse.Namespace, producer_defaults: Mapping[str, Any],
                 producer_enforced: Mapping[str, Any], on_acked: AckCallback) -> None:
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
        self._batch: list[tuple[str, Record, tuple[str, ...], int, Any]] = []
        self._handed_over = 0
        self._acknowledged = 0
        self._flushed: Optional[int] = None
        self._send(("start", (args, dict(producer_defaults), dict(producer_enforced))))
        if not self._replies.poll(START_TIMEOUT_S):
            self.close()
            raise PipelineError(f"the routing worker did not start within {START_TIMEOUT_S:.0f} s")
        self._receive(expect="ready")

    def send_back_to_retry(self, msg: Message, failure: Failure, retry_count: int, due_ms: int) -> None:
        self._batch.append(("retry", record_of(msg), tuple(failure), retry_count, due_ms))

    def send_to_dlq(self, msg: Message, failure: Failure, retry_count: int, dlq_reason: str) -> None:
        self._batch.append(("dlq", record_of(msg), tuple(failure), retry_count, dlq_reason))

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
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(1.0)
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
        _start, (args, producer_defaults, producer_enforced) = commands.recv()
    except EOFError:
        os._exit(1)
    setup_logging(args.log_level)
    # The command reader gets the GIL within 0.2 ms (5 ms by default) of a send, so the parent never waits long.
    sys.setswitchinterval(0.0002)
    try:
        _route_until_stopped(commands, replies, args, producer_defaults, producer_enforced)
    except Exception as exc:  # the parent says it in one line and stops
        replies.send(("failed", f"{type(exc).__name__}: {exc}"))


def _route_until_stopped(commands: Connection, replies: Connection, args: argparse.Namespace,
                         producer_defaults: dict[str, Any], producer_enforced: dict[str, Any]) -> None:
    clients = Clients(ClientSettings(args), args.group_id)
    producer = clients.producer(producer_defaults, producer_enforced, warm_up=[args.retry_topic, args.dlq_topic])
    acked: list[tuple[Source, Source]] = []
    router = Router(producer, args.retry_topic, args.dlq_topic, lambda source, copy: acked.append((source, copy)))
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
            for target, record, failure, retry_count, extra in payload:
                if target == "retry":
                    router.send_back_to_retry(message_of(record), Failure(*failure), retry_count, extra)
                else:
                    router.send_to_dlq(message_of(record), Failure(*failure), retry_count, extra)
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
