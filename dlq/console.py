"""The dead-letter console: pages and a JSON API over the index, the group's figures and the one replay.

FastAPI serves both (its OpenAPI description at ``/openapi.json``); Jinja2
renders the pages with autoescaping, so a key, value or header holding HTML
shows as text. Writes (replay) need the bearer token and are off with
``read_only``. Replays run one at a time in a thread and report progress.
"""

from __future__ import annotations

import hmac
import threading
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from dlq.index import Cursor, DeadLetterIndex, Entry
from dlq.replay import ReplayReport, ReplayRequest
from domain.codecs import Codec
from domain.dead_letters import ReplaySelection, format_time_ms, parse_time_ms, show_key

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
PAGE_SIZE = 50


class Filter(BaseModel):
    """Which dead letters: every condition given must hold (as ``dlq_consumer --replay`` takes them)."""

    reason: Optional[str] = Field(None, description="reason or error contains this text (any case)")
    error_class: Optional[str] = Field(None, description="the failure's error class, e.g. ValidationError")
    key: Optional[str] = Field(None, description="the record key, as UTF-8 text")
    since: Optional[str] = Field(None, description="dead-lettered at or after (ISO 8601 or epoch ms)")
    until: Optional[str] = Field(None, description="dead-lettered before (ISO 8601 or epoch ms)")

    def selection(self) -> ReplaySelection:
        try:
            return ReplaySelection(self.reason or None, self.error_class or None,
                                   self.key.encode() if self.key else None,
                                   parse_time_ms(self.since) if self.since else None,
                                   parse_time_ms(self.until) if self.until else None)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None


class DeadLetterRef(BaseModel):
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class ReplayBody(BaseModel):
    dead_letters: Optional[list[DeadLetterRef]] = Field(None, description="these dead letters")
    filter: Optional[Filter] = Field(None, description="or every dead letter this filter takes")
    dry_run: bool = Field(True, description="say what would be replayed, send nothing")


@dataclass
class Job:
    id: str
    report: ReplayReport
    error: Optional[str] = None


@dataclass
class Console:
    """What the pages and the API read and do; built in ``dlq.web.main()``."""

    index: DeadLetterIndex
    summary: Callable[[], dict[str, Any]]  # the group's figures (dashboard.collect)
    replay: Callable[[ReplayRequest, ReplayReport], ReplayReport]  # dlq.replay.replay, bound to the clients
    codec: Codec
    token: str
    read_only: bool
    max_rate: float

    def __post_init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self._one_replay = threading.Lock()

    def item(self, entry: Entry) -> dict[str, Any]:
        facts = entry.facts
        return {"partition": entry.partition, "offset": entry.offset, "time": format_time_ms(facts.timestamp_ms),
                "timestamp_ms": facts.timestamp_ms, "key": show_key(facts.key), "reason": facts.reason,
                "error": facts.error, "error_class": facts.error_class, "attempts": entry.attempts,
                "origin": entry.origin, "replayed": self.index.replayed(entry)}

    def detail(self, partition: int, offset: int) -> dict[str, Any]:
        entry = self.index.get((partition, offset))
        msg = self.index.fetch((partition, offset)) if entry is not None else None
        if entry is None or msg is None:
            raise HTTPException(404, f"no dead letter at {self.index.topics.dlq}[{partition}]@{offset}")
        headers = [{"name": name, "value": _text_or_hex(value)} for name, value in msg.headers() or []]
        try:
            order: Optional[dict[str, Any]] = dict(self.codec.decode(msg.value()))
            undecodable = None
        except self.codec.decode_error as exc:
            order, undecodable = None, str(exc) or type(exc).__name__
        return {**self.item(entry), "headers": headers, "order": order, "undecodable": undecodable,
                "value_hex": None if order is not None or msg.value() is None else msg.value().hex()}

    def start_replay(self, body: ReplayBody) -> dict[str, Any]:
        if (body.dead_letters is None) == (body.filter is None):
            raise HTTPException(400, "give either dead_letters or filter")
        selection = body.filter.selection() if body.filter is not None else ReplaySelection()
        only = frozenset((ref.partition, ref.offset) for ref in body.dead_letters) if body.dead_letters is not None \
            else None
        request = ReplayRequest(selection, self.max_rate, body.dry_run, only=only)
        if not self._one_replay.acquire(blocking=False):
            raise HTTPException(409, "a replay is running; wait for it to finish")
        job = Job(uuid.uuid4().hex[:12], ReplayReport(body.dry_run))
        self.jobs[job.id] = job
        if body.dry_run:
            self._run(job, request)
            if job.error is not None:
                raise HTTPException(503, f"the dry run could not read the dead letters: {job.error}")
            return self.job_status(job.id)
        threading.Thread(target=self._run, args=(job, request), name=f"replay-{job.id}", daemon=True).start()
        return self.job_status(job.id)

    def _run(self, job: Job, request: ReplayRequest) -> None:
        try:
            self.replay(request, job.report)
        except Exception as exc:  # reported through the job, whose page shows it
            job.error = str(exc)
            job.report.done = True
        finally:
            self._one_replay.release()

    def wait_for_replay(self, timeout_s: float) -> None:
        """At shutdown: let a running replay (told to stop) flush what it sent."""
        if self._one_replay.acquire(timeout=timeout_s):
            self._one_replay.release()

    def job_status(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no replay {job_id}")
        report = job.report
        return {"job": job.id, "dry_run": report.dry_run, "done": report.done, "error": job.error,
                "count": len(report.chosen) - report.undelivered,
                "dead_letters": [{"partition": p, "offset": o} for p, o in report.chosen],
                **{k: v for k, v in asdict(report).items() if k in ("repeated", "not_replayable", "undelivered")}}


def parse_cursor(text: Optional[str]) -> Optional[Cursor]:
    """A page's cursor, ``time-partition-offset`` of the last dead letter it showed."""
    if not text:
        return None
    parts = text.split("-")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        raise HTTPException(400, f"not a cursor: {text!r} (pass the cursor of the previous page)")
    return int(parts[0]), int(parts[1]), int(parts[2])


def _text_or_hex(value: Optional[bytes]) -> str:
    if value is None:
        return "<null>"
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return "hex " + value.hex()


def build_app(console: Console) -> FastAPI:
    app = FastAPI(title="kafka-orders dead-letter console", version="1",
                  description="The group's figures, the dead letters, and their replay to the main consumer.")

    def may_write(authorization: Optional[str] = Header(None, description="Bearer TOKEN")) -> None:
        if console.read_only:
            raise HTTPException(403, "this console is read-only (--read-only)")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), console.token.encode()):
            raise HTTPException(401, "replay needs the console's token: Authorization: Bearer TOKEN",
                                headers={"WWW-Authenticate": "Bearer"})

    def filter_of(reason: Optional[str] = Query(None), error_class: Optional[str] = Query(None),
                  key: Optional[str] = Query(None), since: Optional[str] = Query(None),
                  until: Optional[str] = Query(None)) -> Filter:
        return Filter(reason=reason, error_class=error_class, key=key, since=since, until=until)

    def listing(selection: Filter, limit: int, cursor: Optional[str]) -> dict[str, Any]:
        page = console.index.page(selection.selection(), limit, parse_cursor(cursor))
        return {"items": [console.item(entry) for entry in page.entries],
                "cursor": None if page.cursor is None else "-".join(map(str, page.cursor))}

    @app.get("/api/summary", tags=["figures"])
    def summary() -> dict[str, Any]:
        """The whole group's figures: processed, running average, retried, dead-lettered, retry backlog, lag."""
        return console.summary()

    @app.get("/api/dead-letters", tags=["dead letters"])
    def dead_letters(selection: Filter = Depends(filter_of), limit: int = Query(PAGE_SIZE, ge=1, le=1000),
                     cursor: Optional[str] = Query(None, description="the previous page's cursor")) -> dict[str, Any]:
        """A page of dead letters, newest first; pass the answer's ``cursor`` for the next one."""
        return listing(selection, limit, cursor)

    @app.get("/api/dead-letters/{partition}/{offset}", tags=["dead letters"])
    def dead_letter(partition: int, offset: int) -> dict[str, Any]:
        """One dead letter: every header, the decoded order (or its bytes and why not), its origin."""
        return console.detail(partition, offset)

    @app.post("/api/replay", tags=["replay"], dependencies=[Depends(may_write)])
    def replay(body: ReplayBody) -> dict[str, Any]:
        """Re-drive dead letters to the main consumer, each once; ``dry_run`` (the default) only says which."""
        return console.start_replay(body)

    @app.get("/api/replays/{job_id}", tags=["replay"])
    def replay_status(job_id: str) -> dict[str, Any]:
        """A replay's progress and outcome."""
        return console.job_status(job_id)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def overview_page(request: Request) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, "overview.html", {"topics": console.index.topics})

    @app.get("/dead-letters", response_class=HTMLResponse, include_in_schema=False)
    def dead_letters_page(request: Request, selection: Filter = Depends(filter_of),
                          cursor: Optional[str] = Query(None)) -> HTMLResponse:
        page = listing(selection, PAGE_SIZE, cursor)
        given = {name: value for name, value in selection.model_dump().items() if value}
        next_url = None if page["cursor"] is None else f"/dead-letters?{urlencode({**given, 'cursor': page['cursor']})}"
        return TEMPLATES.TemplateResponse(request, "dead_letters.html", {
            "page": page, "filter": selection, "topics": console.index.topics, "read_only": console.read_only,
            "total": len(console.index), "next_url": next_url})

    @app.get("/dead-letters/{partition}/{offset}", response_class=HTMLResponse, include_in_schema=False)
    def dead_letter_page(request: Request, partition: int, offset: int) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, "dead_letter.html", {
            "letter": console.detail(partition, offset), "topics": console.index.topics})

    return app
