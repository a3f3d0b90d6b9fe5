"""The Certifier Service as an ASGI app: ``create_app(settings)``.

Run it with ``veritee serve`` (uvicorn), or in-process in tests with httpx's ASGI transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from veritee import __version__
from veritee.collateral.freshness import readiness
from veritee.domain import Domain
from veritee.errors import NotFoundError, StorageError, UsageError, VeriteeError
from veritee.keybroker.kek import KEK_ENV, KEK_FILE, KeyEncryptionKey, domain_kek
from veritee.reasons import Code
from veritee.service.bodies import is_json
from veritee.service.context import ServiceContext
from veritee.service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from veritee.service.metrics import Metrics
from veritee.service.problems import http_problem, install_handlers, problem, veritee_problem
from veritee.service.serving import AccessLog
from veritee.service.settings import Settings
from veritee.service.storage import Storage
from veritee.service.storage.tx import Tx
from veritee.tokens import EAR_PROFILE, jwk_of

__all__ = ["create_app"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, also when chunked (no length)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = True
                if too_big:
                    await self._reject(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        resp = problem(
            413, "oversized", "Request body too large", f"the limit is {self.limit} bytes"
        )
        await resp(scope, receive, send)


class _TooLarge(Exception):
    pass


class RequestCounts:
    """The request series of one app: requests by route template and status, their latency,
    the requests in progress. Kept by :class:`RequestMetrics` for the ASGI path and by the
    protocol's hot routes (:mod:`veritee.service.http_protocol`): one place for both.

    A request is counted when its response starts, before the client can see it: a client's
    next request, to any worker, finds it in ``/metrics``. The labelled series a request
    updates are looked up once per route (and status) and kept here: a request then costs its
    writes to them and a dict lookup each.
    """

    #: The most (route, status) series kept at hand; the rest are looked up each time.
    MAX_SERIES = 1024

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._in_progress: Any = None
        self._counters: dict[tuple[str, int], Any] = {}
        self._latencies: dict[str, Any] = {}

    def count(self, path: str, status: int) -> None:
        counter = self._counters.get((path, status))
        if counter is None:
            counter = self.metrics.counter(
                "veritee_http_requests_total", "HTTP requests", route=path, status=str(status)
            )
            if len(self._counters) < self.MAX_SERIES:
                self._counters[(path, status)] = counter
        counter.inc()

    def observe(self, path: str, seconds: float) -> None:
        histogram = self._latencies.get(path)
        if histogram is None:
            histogram = self.metrics.histogram(route=path)
            if len(self._latencies) < self.MAX_SERIES:
                self._latencies[path] = histogram
        histogram.observe(seconds)

    def begin(self) -> float:
        """A request starts being answered: it is in progress until :meth:`end`."""
        in_progress = self._in_progress
        if in_progress is None:  # declared by the first request, as before
            in_progress = self._in_progress = self.metrics.gauge(
                "veritee_http_requests_in_progress", "HTTP requests being answered", mode="livesum"
            )
        in_progress.inc()
        self.metrics.requests_in_progress += 1
        return time.perf_counter()

    def end(self, path: str, start: float) -> None:
        self.metrics.requests_in_progress -= 1
        self._in_progress.dec()
        self.observe(path, time.perf_counter() - start)


def _route_path(scope: Scope) -> str:
    return getattr(scope.get("route"), "path", "unmatched")


class RequestMetrics:
    """Count requests by route template and status, and time them (plain ASGI: cheap), in
    ``counts`` (:class:`RequestCounts`)."""

    def __init__(self, app: ASGIApp, counts: RequestCounts) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counts = self.counts
        counted = False

        async def send_wrapper(message: Message) -> None:
            nonlocal counted
            if message["type"] == "http.response.start" and not counted:
                counted = True
                counts.count(_route_path(scope), int(message["status"]))
            await send(message)

        start = counts.begin()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if not counted:  # no response started (the app raised): the server answers 500
                counts.count(_route_path(scope), 500)
            counts.end(_route_path(scope), start)


class FastChallenge:
    """``POST /v1/challenge`` answered here, below the request middleware (metrics, access log,
    body limit) but without the router and FastAPI's request handling, which cost several times
    the nonce itself: half a workload's requests are challenges. The answer is the route's own
    (:func:`veritee.service.routes_attest.challenge_response`), and ``scope["route"]`` is the
    route, so metrics and the access log name it as before. Installed only while the route takes
    nothing but the request (:func:`fast_challenge_route`); anything else goes to the router.
    """

    def __init__(self, app: ASGIApp, route: Any, ctx: ServiceContext) -> None:
        self.app = app
        self.route = route
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http" and scope["path"] == CHALLENGE_PATH and scope["method"] == "POST"
            and not scope.get("root_path")
        ):  # fmt: skip
            from veritee.service.routes_attest import challenge_response

            scope["route"] = self.route
            await challenge_response(self.ctx)(scope, receive, send)
            return
        await self.app(scope, receive, send)


CHALLENGE_PATH = "/v1/challenge"
ATTEST_PATH = "/v1/attest"


class FastAttest:
    """``POST /v1/attest`` answered here, below the request middleware but without the router
    and FastAPI's request handling (dependency solving, the route's wrappers), which cost about
    as much CPU as the rest of the service's own work on an attestation.

    The body is read and checked as the route does it: a JSON content type
    (:func:`veritee.service.bodies.is_json`), veritee's bounded JSON loader, then the route's
    model (:class:`veritee.service.schemas.AttestRequest`). A body that fails any of these, or
    a request that is anything else, goes to the router with its body as read, which answers it
    as before (the same 400 problems). The answer is the route's own
    (:func:`veritee.service.routes_attest.attest_response`); its errors become the same problem
    documents as under the router (:func:`veritee.service.problems.veritee_problem`), and any
    other exception goes up to the server-error handler as it did. Installed only while the
    route takes nothing but that body and the request (:func:`fast_attest_route`).
    """

    def __init__(self, app: ASGIApp, route: Any, ctx: ServiceContext) -> None:
        self.app = app
        self.route = route
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http" and scope["path"] == ATTEST_PATH and scope["method"] == "POST"
            and not scope.get("root_path") and is_json(_content_type(scope))
        ):  # fmt: skip
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: the router's business
                await self.app(scope, _replay(chunks, receive, message), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = attest_body(b"".join(chunks))
        if body is None:
            await self.app(scope, _replay(chunks, receive, None), send)
            return
        scope["route"] = self.route
        response = await attest_answer(self.ctx, body)
        await response(scope, receive, send)


async def attest_answer(ctx: ServiceContext, body: Any) -> Response:
    """The route's answer to an attest request whose body (``body``, from :func:`attest_body`)
    was read below the router: :func:`veritee.service.routes_attest.attest_response`, its errors
    the same problem documents as under the router; any other exception goes up (to the
    server-error handler)."""
    from veritee.service.routes_attest import attest_response

    try:
        return await attest_response(ctx, body)
    except VeriteeError as exc:
        return veritee_problem(exc)
    except StarletteHTTPException as exc:
        return http_problem(exc)


def attest_body(raw: bytes) -> Any:
    """The attest route's body model from ``raw``, or None when the route would refuse it."""
    from pydantic import ValidationError

    from veritee import _json
    from veritee.service.schemas import AttestRequest

    if not raw:
        return None
    try:
        return AttestRequest.model_validate(_json.loads(raw, what="request body", limit=len(raw)))
    except (VeriteeError, ValidationError):
        return None


def _content_type(scope: Scope) -> str | None:
    for name, value in scope["headers"]:  # the first one, as Starlette's Headers.get
        if name == b"content-type":
            text: str = value.decode("latin-1")
            return text
    return None


def _replay(chunks: list[bytes], receive: Receive, last: Message | None) -> Receive:
    """``receive`` for a request whose body (``chunks``, then ``last`` if not None) was read."""
    pending: list[Message] = [
        {"type": "http.request", "body": b"".join(chunks), "more_body": last is not None}
    ]
    if last is not None:
        pending.append(last)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def fast_challenge_route(app: FastAPI) -> Any:
    """The ``POST /v1/challenge`` route if :class:`FastChallenge` may answer for it: its endpoint
    is :func:`veritee.service.routes_attest.challenge` and it takes no parameter, body or
    dependency (else None: a route that has grown any is served by the router)."""
    from veritee.service import routes_attest

    return _fast_route(app, CHALLENGE_PATH, routes_attest.challenge, body=None)


def fast_attest_route(app: FastAPI) -> Any:
    """The ``POST /v1/attest`` route if :class:`FastAttest` may answer for it: its endpoint is
    :func:`veritee.service.routes_attest.attest` and it takes the request and one body,
    :class:`veritee.service.schemas.AttestRequest`, and no other parameter or dependency (else
    None)."""
    from veritee.service import routes_attest
    from veritee.service.schemas import AttestRequest

    return _fast_route(app, ATTEST_PATH, routes_attest.attest, body=AttestRequest)


def _fast_route(app: FastAPI, path: str, endpoint: Any, *, body: type | None) -> Any:
    """The attest router's ``POST path`` route if it is ``endpoint`` taking the request and
    ``body`` (a model, or None for no body) and nothing else, and the router is included in
    ``app`` as it is; else None."""
    from fastapi.routing import APIRoute

    from veritee.service import routes_attest

    # included as it is: no prefix or dependencies added by the app
    included = [c for r, c in _included_routers(app) if r is routes_attest.router]
    if (
        len(included) != 1
        or getattr(included[0], "prefix", None)
        or getattr(included[0], "dependencies", None)
    ):
        return None
    for route in routes_attest.router.routes:  # the routes the app matches (their very objects)
        if isinstance(route, APIRoute) and route.path == path and "POST" in (route.methods or ()):
            d = route.dependant
            takes = (d.path_params, d.query_params, d.header_params, d.cookie_params,
                     d.dependencies)  # fmt: skip
            # one body, the model itself (not embedded under its parameter's name)
            bodies = [f.field_info.annotation for f in d.body_params
                      if not getattr(f.field_info, "embed", False)]  # fmt: skip
            if (
                route.endpoint is endpoint and not any(takes)
                and len(d.body_params) == len(bodies) and bodies == ([] if body is None else [body])
            ):  # fmt: skip
                return route
            return None
    return None


def _included_routers(app: FastAPI) -> list[tuple[Any, Any]]:
    """(router, how it was included) for each ``app.include_router`` (FastAPI keeps each whole)."""
    return [
        (getattr(r, "original_router", None), getattr(r, "include_context", None))
        for r in app.router.routes
    ]


# Routers in matching order (hot workload routes first: routes are tried one by one), as
# (module, attribute). Components that are not installed are skipped.
ROUTERS = (
    ("veritee.service.routes_attest", "router"),
    ("veritee.service.routes_secrets", "release_router"),
    ("veritee.service.routes_sealing", "router"),
    ("veritee.service.routes_admin", "router"),
    ("veritee.service.routes_secrets", "router"),
    ("veritee.service.routes_kbs", "router"),
    ("veritee.service.routes_tpm", "router"),
    ("veritee.service.routes_keystores", "router"),
    ("veritee.service.routes_revocations", "router"),
    ("veritee.service.console", "router"),
    ("veritee.service.routes_refvalues", "router"),
)


NONCE_PURGE_SECONDS = 60.0
NONCE_PURGE_BATCH = 2000


def _purge(ctx: ServiceContext) -> int:
    """Purge ended nonces, then expired KBS sessions, in short transactions: each holds the
    database's write lock only briefly."""
    total, now = 0, ctx.now()
    purges: tuple[Callable[[Tx], int], ...] = (
        lambda tx: tx.purge_nonces(now=now, limit=NONCE_PURGE_BATCH),
        lambda tx: tx.purge_kbs_sessions(now=now, limit=NONCE_PURGE_BATCH),
    )
    for purge in purges:
        while True:
            with ctx.storage.transaction() as tx:
                n = purge(tx)
            total += n
            if n < NONCE_PURGE_BATCH:
                break
    return total


async def _refresh_collateral_periodically(ctx: ServiceContext, every: float) -> None:
    """Fetch the collateral that is due, every ``every`` seconds, in a worker thread (each
    worker runs this; leases in the database let one fetch each item)."""
    refresher = ctx.refresher
    assert refresher is not None
    while True:
        try:
            await anyio.to_thread.run_sync(refresher.run_once, ctx.now())
        except VeriteeError as e:
            log.warning("collateral refresh failed: %s: %s; will try again", e.code, e.message)
        await asyncio.sleep(every)


async def _purge_nonces_periodically(ctx: ServiceContext) -> None:
    """Delete the records of used nonces whose lifetime has ended, once a minute, in a worker
    thread (also on SQLite, whose short transactions otherwise run on the event loop)."""
    while True:
        await asyncio.sleep(NONCE_PURGE_SECONDS)
        try:
            await anyio.to_thread.run_sync(_purge, ctx)
        except StorageError:
            log.warning("purging ended nonces failed; will try again")


def bind_kek(
    store: Storage, settings: Settings, given: KeyEncryptionKey | None
) -> KeyEncryptionKey:
    """The KEK this replica uses, checked against the one the database records.

    The first replica to start records its KEK's identifier (``kek_id``: a hash of a key
    derived from the KEK, never the key) in ``domain_facts``; a database from before that
    record is bound to the KEK that wrapped its secrets. A replica whose KEK differs, or whose
    ``secrets.kek`` is missing while the database records one, refuses to start
    (``UsageError`` ``kek_mismatch`` / ``kek_missing``) instead of making a new KEK whose
    secrets no other replica could open.
    """
    with store.transaction(readonly=True) as tx:
        recorded = tx.domain_fact("kek_id")
        in_use = tx.kek_ids_in_use() if recorded is None else set()
    expected = recorded or (", ".join(sorted(in_use)) if in_use else None)
    if given is not None:
        kek = given
    else:
        try:
            kek = domain_kek(settings.data_dir, create=expected is None)
        except UsageError as e:
            if e.code != "kek_missing":
                raise
            raise UsageError(
                f"this database's secrets are under KEK {expected}, and this replica has no "
                f"key-encryption key ({settings.data_dir / KEK_FILE} is missing, {KEK_ENV} is "
                f"not set): copy {KEK_FILE} from another replica of the domain, or set {KEK_ENV}; "
                "a new KEK is not made, since its secrets could not be released by the others",
                code="kek_missing",
            ) from None
    if recorded is None:
        if in_use and kek.kek_id not in in_use:
            raise UsageError(
                f"this replica's KEK is {kek.kek_id}, but this database's secrets are under KEK "
                f"{expected}: give this replica the domain's {KEK_FILE} (or {KEK_ENV})",
                code="kek_mismatch",
            )
        with store.transaction() as tx:
            recorded = tx.record_domain_fact("kek_id", kek.kek_id, now=ServiceContext.now())
    if recorded != kek.kek_id:
        raise UsageError(
            f"this replica's KEK is {kek.kek_id}, but the database records KEK {recorded} for "
            f"this domain: give this replica the domain's {KEK_FILE} (or {KEK_ENV}), as copied "
            "from the replica that made it",
            code="kek_mismatch",
        )
    return kek


def create_app(
    settings: Settings, *, storage: Storage | None = None, kek: KeyEncryptionKey | None = None
) -> FastAPI:
    """Build the service for the domain in ``settings.data_dir``; migrates the database.

    ``kek``: the key-encryption key of the secrets; by default the domain's
    (:func:`veritee.keybroker.kek.domain_kek`: ``$VERITEE_KEK`` or ``<data>/secrets.kek``).
    It must be the KEK the database records (:func:`bind_kek`), else ``UsageError``.
    """
    domain = Domain.open(settings.data_dir)
    store = storage or Storage(settings.database_url or domain.database_url)
    store.set_nonce_key(domain.nonce_key)
    store.migrate()
    ctx = ServiceContext(settings, domain, store, bind_kek(store, settings, kek))
    store.set_busy_hint(lambda: ctx.metrics.requests_in_progress)
    if settings.collateral_fetch is not None:
        from veritee.service.collateral_refresh import CollateralRefresher

        ctx.refresher = CollateralRefresher(ctx, settings.collateral_fetch)
    from veritee.service.collateral_refresh import collateral_metrics

    ctx.metrics.add_collector(lambda: collateral_metrics(ctx))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_purge_nonces_periodically(ctx))]
        fetch = settings.collateral_fetch
        if fetch is not None and fetch.check_seconds > 0:
            tasks.append(
                asyncio.create_task(_refresh_collateral_periodically(ctx, fetch.check_seconds))
            )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            ctx.metrics.close()
            ctx.close()
            if storage is None:
                store.close()

    app = FastAPI(
        title="veritee Certifier Service",
        version=__version__,
        description="Appraises TEE evidence against a signed policy; issues EAR tokens and admission certificates.",
        lifespan=lifespan,
        # No trailing-slash redirects: Starlette builds their Location from the client's Host
        # header (an open redirect through a shared cache or proxy); a wrong path is a 404.
        redirect_slashes=False,
        # FastAPI's built-in OpenTelemetry checks on every request whether a provider is
        # configured; veritee's observability is /metrics and the audit log, so it is off.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.ctx = ctx
    install_handlers(app)

    for module, attr in ROUTERS:  # every router or none: a missing dependency stops the start
        app.include_router(getattr(importlib.import_module(module), attr))

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz", tags=["operations"], summary="Readiness: the database takes a write in time"
    )
    def readyz() -> Response:
        # A write as a decision makes one (Storage.check), bounded by readiness_timeout: 200
        # means this instance can decide and audit now. Collateral near or past its nextUpdate
        # makes it "degraded" (still 200: other platforms' evidence is still decided; the body
        # says which items, "warning" or "failing").
        now = ctx.now()
        try:
            store.check(now=now, timeout=settings.readiness_timeout)
        except StorageError as e:
            log.warning("not ready: %s: %s", e.code, e.message)  # no statement, no parameters
            return problem(503, e.code, "Not ready", e.message)
        try:
            fresh = readiness(ctx.collateral_items(), now, settings.collateral_warn_before)
        except VeriteeError as e:
            return JSONResponse({"status": "degraded", "collateral": {"status": "failing", "code": e.code,
                                                                      "message": e.message}})  # fmt: skip
        body: dict[str, Any] = {"status": "ready" if fresh.status == "ok" else "degraded",
                                "collateral": fresh.to_json(now, settings.collateral_warn_before)}  # fmt: skip
        if fresh.status != "ok":
            body["collateral"]["code"] = (
                Code.COLLATERAL_EXPIRED if fresh.expired else Code.COLLATERAL_EXPIRING
            )
        return JSONResponse(body)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(ctx.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/.well-known/jwks.json", tags=["attestation"], summary="Keys that sign EAR tokens")
    def jwks() -> dict[str, Any]:
        return {"keys": [jwk_of(domain.token_key.public_key(), domain.token_kid)]}

    @app.get(
        "/.well-known/openid-configuration", tags=["attestation"],
        summary="OpenID Connect discovery: the issuer of EAR tokens and its JWKS",
    )  # fmt: skip
    def openid_configuration(request: Request) -> dict[str, Any]:
        return discovery_document(
            settings.issuer, str(request.base_url), domain.token_key.curve.key_size
        )

    attester = None
    if settings.attest_self is not None:
        from veritee.service.self_attest import ServiceAttester, open_service_platform

        state = settings.attest_state_dir or settings.data_dir / "service-platform"
        attester = ServiceAttester(open_service_platform(settings.attest_self, state), domain,
                                   issuer=settings.issuer, tls_certificate=settings.tls_certificate)  # fmt: skip
    ctx.service_attester = attester

    @app.get(
        "/v1/domain/evidence", tags=["attestation"],
        summary="The service's evidence of itself, binding the keys it signs with and serves TLS with",
    )  # fmt: skip
    def domain_evidence() -> dict[str, Any]:
        if attester is None:
            raise NotFoundError(
                "this Certifier Service publishes no evidence of itself (veritee serve --attest-self PLATFORM)",
                code="service_evidence_missing",
            )
        return attester.document()

    @app.get("/v1/domain/ca", tags=["attestation"], summary="The domain CA certificate (PEM)")
    def domain_ca() -> PlainTextResponse:
        return PlainTextResponse(domain.ca_pem.decode(), media_type="application/x-pem-file")

    _add_middleware(app, settings, ctx)
    return app


def _add_middleware(app: FastAPI, settings: Settings, ctx: ServiceContext) -> None:
    """The request middleware, innermost first (each one added wraps the ones before)."""
    attest_route = fast_attest_route(app)
    if attest_route is not None:
        app.add_middleware(FastAttest, route=attest_route, ctx=ctx)
    challenge_route = fast_challenge_route(app)
    if challenge_route is not None:
        app.add_middleware(FastChallenge, route=challenge_route, ctx=ctx)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    counts = RequestCounts(ctx.metrics)
    app.add_middleware(RequestMetrics, counts=counts)
    if settings.access_log:
        app.add_middleware(AccessLog)  # outermost: also the requests refused below it
    app.state.hot_routes = HotRoutes(
        ctx=ctx, counts=counts, max_body=settings.max_body_bytes, challenge=challenge_route,
        attest=attest_route, middleware=tuple(app.user_middleware),
    ) if not settings.access_log else None  # fmt: skip


@dataclasses.dataclass(frozen=True)
class HotRoutes:
    """What the service's uvicorn protocol (:mod:`veritee.service.http_protocol`) needs to answer
    ``POST /v1/challenge`` and ``POST /v1/attest`` itself, as :class:`FastChallenge` and
    :class:`FastAttest` do under the request middleware: the routes (None: not answered there),
    the request series (:class:`RequestCounts`) and the body limit (:class:`BodyLimit`'s).
    ``middleware`` is the app's middleware when these were made: with any other (added later),
    the protocol answers nothing itself. None on ``app.state`` with the access log on."""

    ctx: ServiceContext
    counts: RequestCounts
    max_body: int
    challenge: Any
    attest: Any
    middleware: tuple[Any, ...]


JWKS_PATH = "/.well-known/jwks.json"


def discovery_document(issuer: str, base_url: str, key_size: int = 256) -> dict[str, Any]:
    """The OpenID Connect discovery document (OpenID Connect Discovery 1.0 §3) of the service as
    an issuer of EAR tokens, so that relying parties that only speak OIDC find its keys.

    ``issuer`` is the ``iss`` every token carries (the setting ``issuer``; OIDC wants it to be the
    https URL this document is served under: ``veritee serve --issuer https://host:8400``).
    ``jwks_uri`` is ``<issuer>/.well-known/jwks.json`` when the issuer is such a URL, else the
    JWKS under the URL the request reached (``base_url``). The service runs no authorization
    flow, so it publishes no ``authorization_endpoint`` (as other token issuers that are not
    login providers do); the metadata OIDC requires say what its tokens are: ID-token-like JWTs
    (``response_types_supported: ["id_token"]``) signed ES256/ES384, with the EAR claims.
    """
    if issuer.startswith(("https://", "http://")):
        jwks_uri = issuer.rstrip("/") + JWKS_PATH
    else:
        jwks_uri = base_url.rstrip("/") + JWKS_PATH
    alg = {256: "ES256", 384: "ES384"}.get(key_size, "ES256")
    return {
        "issuer": issuer,
        "jwks_uri": jwks_uri,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [alg],
        "scopes_supported": ["openid"],
        "claims_supported": [
            "iss",
            "aud",
            "iat",
            "nbf",
            "exp",
            "eat_profile",
            "eat_nonce",
            "cnf",
            "ear.verifier-id",
            "submods",
        ],
        "eat_profiles_supported": [EAR_PROFILE],
    }


def app_from_env() -> FastAPI:
    """App factory for several uvicorn worker processes (`veritee serve --workers N`).

    Reads ``VERITEE_DATA_DIR``, ``VERITEE_DATABASE_URL``,
    ``VERITEE_ACCEPT_ATTESTER_COLLATERAL`` and ``VERITEE_ACCESS_LOG`` (``1`` or empty),
    ``VERITEE_ISSUER`` (empty: the default), ``VERITEE_ATTEST_SELF``, ``VERITEE_ATTEST_STATE`` and
    ``VERITEE_TLS_CERT`` (empty: none), ``VERITEE_COLLATERAL_FETCH``
    (JSON: ``on``, ``pccs``, ``kds``, ``pcs``, ``warn_hours``); set by the CLI.
    """
    import datetime as dt
    import json
    import os
    from pathlib import Path

    from veritee.service.settings import DEFAULT_ISSUER, fetch_settings

    fetch = json.loads(os.environ.get("VERITEE_COLLATERAL_FETCH") or '{"on": false}')
    return create_app(
        Settings(
            data_dir=Path(os.environ["VERITEE_DATA_DIR"]),
            database_url=os.environ.get("VERITEE_DATABASE_URL") or None,
            accept_attester_collateral=os.environ.get("VERITEE_ACCEPT_ATTESTER_COLLATERAL") == "1",
            issuer=os.environ.get("VERITEE_ISSUER") or DEFAULT_ISSUER,
            access_log=os.environ.get("VERITEE_ACCESS_LOG") == "1",
            attest_self=os.environ.get("VERITEE_ATTEST_SELF") or None,
            attest_state_dir=Path(state)
            if (state := os.environ.get("VERITEE_ATTEST_STATE"))
            else None,
            tls_certificate=Path(cert) if (cert := os.environ.get("VERITEE_TLS_CERT")) else None,
            collateral_fetch=fetch_settings(
                bool(fetch.get("on")),
                pccs=fetch.get("pccs"),
                kds=fetch.get("kds"),
                pcs=fetch.get("pcs"),
            ),
            collateral_warn_before=dt.timedelta(hours=float(fetch.get("warn_hours", 48.0))),
        )
    )
