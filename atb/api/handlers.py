"""The JSON API's tornado handlers, mounted by the health server and the dashboards server.

`api_routes(source)` returns the routes; `ApiSource` says where the data comes from (a
database engine), which run (fixed for a session's health server, else `?run_id=` or the
newest paper/live session) and who may read (`authorize`, the same rule as /status).

Every answer is a model of atb.api.schemas, dumped to JSON and passed through the run's
one redactor (atb.logging.redaction). Bad query parameters get `400` with one line naming
the parameter; an unknown run `404`; an unreachable database `503`. Database reads run on
a small thread pool with a timeout, never on the HTTP loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import tornado.web

from atb.api.errors import DatabaseUnavailable, RunNotFound
from atb.api.schemas import SCHEMAS, ApiModel, Loop
from atb.logging.redaction import get_redactor, redact_obj, redact_text

if TYPE_CHECKING:  # SQLAlchemy is imported with the first read, not with the server
    from sqlalchemy import Connection, Engine

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
POSITION_STATUSES = ("open", "closed", "all")


class BadRequest(ValueError):
    """A query parameter the API cannot use: 400 with this message."""


def authorizer(
    token: str | None, basic: tuple[str, str] | None = None
) -> Callable[[str | None], bool]:
    """`Authorization` header check: `Bearer <token>` or, when given, HTTP Basic
    `user:password`. Nothing configured: open (exposure checks refuse that off loopback)."""

    def authorized(header: str | None) -> bool:
        if token is None and basic is None:
            return True
        scheme, _, given = (header or "").partition(" ")
        given = given.strip()
        if token is not None and scheme.lower() == "bearer":
            return hmac.compare_digest(given.encode(), token.encode())
        if basic is not None and scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(given).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return hmac.compare_digest(
                f"{user}:{password}".encode(), f"{basic[0]}:{basic[1]}".encode()
            )
        return False

    return authorized


@dataclass
class ApiSource:
    engine: Engine
    authorize: Callable[[str | None], bool]
    run_id: str | None = None
    """The one run this server describes (a session's health server); None: any run."""
    live_loop: Callable[[], Loop | None] | None = None
    """The session's own loop verdict, fresher than its `run_heartbeats` row."""
    timeout: float = 10.0
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=4, thread_name_prefix="atb-api")
    )

    @classmethod
    def from_url(cls, url: str, authorize: Callable[[str | None], bool], **kw: Any) -> ApiSource:
        """Its own small engine: API reads never take a connection from a run's pool."""
        from sqlalchemy import create_engine, make_url

        parsed = make_url(url)
        options: dict[str, Any] = {"pool_pre_ping": True}
        if parsed.get_backend_name() == "postgresql":
            options.update(
                pool_size=2,
                max_overflow=2,
                connect_args={"connect_timeout": 3, "application_name": "atb-api"},
            )
        return cls(engine=create_engine(parsed, **options), authorize=authorize, **kw)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()


def _queries() -> ModuleType:
    """`atb.api.queries`, imported by the first read: it brings SQLAlchemy and the models,
    which a health server without a database never needs (its process starts in ~0.3 s)."""
    from atb.api import queries

    return queries


TOKEN_ENV = "ATB_API_TOKEN"


def database_routes(
    db_url: str, basic: tuple[str, str] | None = None, environ: dict[str, str] | None = None
) -> list[tuple[str, type[tornado.web.RequestHandler], Any]]:
    """The API over a database, for a server that is not a session's (`atb dashboards run`):
    any run by `?run_id=`, the newest session by default. Readers need the bearer token
    (`ATB_API_TOKEN`) when it is set, or the dashboard login (`basic`) when that is on."""
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_ENV, "").strip() or None
    if token is not None:
        get_redactor().add_secrets([token])
    return api_routes(ApiSource.from_url(db_url, authorizer(token, basic)))


def _int(args: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name}: expected an integer from {low} to {high}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name}: expected an integer from {low} to {high}, got {value}")
    return value


Reader = Callable[["Connection", str, dict[str, str], ApiSource], ApiModel]


class _JsonHandler(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD")
    source: ApiSource

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.clear_header("Server")

    def compute_etag(self) -> str | None:
        return None

    def send(self, code: int, payload: Any) -> None:
        self.set_status(code)
        self.finish(json.dumps(payload, default=str, separators=(",", ":")).encode())

    def fail(self, code: int, message: str) -> None:
        self.send(code, {"status": "error", "code": code, "error": redact_text(message)})

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.fail(status_code, self._reason.lower())

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        return  # answers carry the error; the run's log is not the place for client mistakes

    def prepare(self) -> None:
        if not self.source.authorize(self.request.headers.get("Authorization")):
            self.set_header("WWW-Authenticate", 'Bearer realm="atb"')
            self.fail(401, "unauthorized")

    async def head(self, *path: str) -> None:
        await self.get(*path)  # type: ignore[misc]


class ApiHandler(_JsonHandler):
    """One endpoint: `reader` builds its model; `params` are the query parameters it takes."""

    def initialize(self, source: ApiSource, reader: Reader, params: tuple[str, ...]) -> None:
        self.source = source
        self.reader = reader
        self.params = params

    def args(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, values in self.request.query_arguments.items():
            if name not in self.params:
                known = ", ".join(self.params)
                raise BadRequest(f"unknown parameter '{name}' (known: {known})")
            if len(values) != 1:
                raise BadRequest(f"{name}: given {len(values)} times")
            out[name] = values[0].decode("utf-8", "replace")
        return out

    def _run_id(self, conn: Connection, args: dict[str, str]) -> str:
        wanted = args.get("run_id") or None
        fixed = self.source.run_id
        if fixed is not None:
            if wanted is not None and wanted != fixed:
                raise BadRequest(f"run_id: this server describes run {fixed} only")
            return fixed
        return wanted or _queries().latest_run_id(conn)

    def _answer(self, args: dict[str, str]) -> dict[str, Any]:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.source.engine.connect() as conn:
                model = self.reader(conn, self._run_id(conn, args), args, self.source)
        except SQLAlchemyError as exc:
            first = (str(getattr(exc, "orig", None) or exc) or type(exc).__name__).strip()
            raise DatabaseUnavailable(
                f"database unavailable: {first.splitlines()[0][:200]}"
            ) from None
        out = redact_obj(model.model_dump(mode="json"))
        return out if isinstance(out, dict) else {}

    async def get(self, *path: str) -> None:
        try:
            args = self.args()
            loop = asyncio.get_running_loop()
            call = loop.run_in_executor(self.source.executor, self._answer, args)
            payload = await asyncio.wait_for(call, self.source.timeout)
        except BadRequest as exc:
            self.fail(400, str(exc))
        except RunNotFound as exc:
            self.fail(404, str(exc))
        except TimeoutError:
            self.fail(503, f"database did not answer within {self.source.timeout:g} s")
        except DatabaseUnavailable as exc:
            self.fail(503, str(exc))
        else:
            self.send(200, payload)


def _paging(args: dict[str, str]) -> tuple[int, int]:
    limit = _int(args, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    return limit, _int(args, "offset", 0, 0, 2**31 - 1)


def read_metrics(conn: Connection, run_id: str, args: dict[str, str], _s: ApiSource) -> ApiModel:
    return _queries().metrics(conn, run_id)


def read_balance(conn: Connection, run_id: str, args: dict[str, str], _s: ApiSource) -> ApiModel:
    return _queries().balance(conn, run_id)


def read_trades(conn: Connection, run_id: str, args: dict[str, str], _s: ApiSource) -> ApiModel:
    return _queries().trades(conn, run_id, *_paging(args))


def read_positions(conn: Connection, run_id: str, args: dict[str, str], _s: ApiSource) -> ApiModel:
    status = args.get("status") or "open"
    if status not in POSITION_STATUSES:
        raise BadRequest(f"status: expected one of {', '.join(POSITION_STATUSES)}")
    return _queries().positions(conn, run_id, status, *_paging(args))


def read_system_status(
    conn: Connection, run_id: str, args: dict[str, str], source: ApiSource
) -> ApiModel:
    live = source.live_loop
    loop = live() if live is not None and run_id == source.run_id else None
    return _queries().system_status(conn, run_id, source.engine.dialect.name, loop)


class SchemaHandler(_JsonHandler):
    def initialize(self, source: ApiSource) -> None:
        self.source = source

    async def get(self, *path: str) -> None:
        name = path[0] if path else ""
        if not name:
            self.send(200, {"schemas": sorted(SCHEMAS)})
        elif name not in SCHEMAS:
            self.fail(404, f"no schema '{name}' (one of: {', '.join(sorted(SCHEMAS))})")
        else:
            self.send(200, SCHEMAS[name].model_json_schema())


ENDPOINTS = ("/api/metrics", "/api/positions", "/api/trades", "/api/balance", "/api/system/status")


def api_routes(source: ApiSource) -> list[tuple[str, type[tornado.web.RequestHandler], Any]]:
    run, page = ("run_id",), ("run_id", "limit", "offset")
    endpoints: list[tuple[str, Reader, tuple[str, ...]]] = [
        ("metrics", read_metrics, run),
        ("positions", read_positions, (*page, "status")),
        ("trades", read_trades, page),
        ("balance", read_balance, run),
        ("system/status", read_system_status, run),
    ]
    routes: list[tuple[str, type[tornado.web.RequestHandler], Any]] = [
        (rf"/api/{name}/?", ApiHandler, {"source": source, "reader": reader, "params": params})
        for name, reader, params in endpoints
    ]
    routes.append((r"/api/schema/?([A-Za-z_]*)/?", SchemaHandler, {"source": source}))
    return routes
