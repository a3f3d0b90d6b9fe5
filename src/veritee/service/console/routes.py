"""The console's routes (see the package docstring)."""

from __future__ import annotations

import datetime as dt
import difflib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from veritee import __version__
from veritee.collateral.freshness import readiness
from veritee.errors import StorageError, VeriteeError
from veritee.service import operations
from veritee.service.console import charts, data, session
from veritee.service.console.html import CSP, Safe, attr_url, h, join, page, table
from veritee.service.context import ServiceContext

__all__ = ["router"]

log = logging.getLogger("veritee.service.console")

router = APIRouter(prefix="/ui", include_in_schema=False)

#: The sign-in form's body is small: a credential of 43 characters and its field name.
MAX_LOGIN_BODY = 4096
#: How many decisions the latest-decisions page lists.
LATEST = 50
_STARTED = time.time()

_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not no-referrer: under it browsers send "Origin: null" with the console's own forms.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def _html(body: Safe, status: int = 200) -> HTMLResponse:
    return HTMLResponse(str(body), status_code=status, headers=_HEADERS)


def _redirect(path: str) -> Response:
    return RedirectResponse(path, status_code=303, headers=_HEADERS)


def _session(request: Request) -> session.Session | None:
    ctx = _ctx(request)
    return session.read(ctx.domain, request.cookies.get(session.COOKIE_NAME), ctx.now())


def _signed_in_page(
    request: Request, title: str, active: str, build: Callable[[ServiceContext], Safe]
) -> Response:
    """``build``'s page for a signed-in operator; anyone else is sent to the sign-in page."""
    s = _session(request)
    if s is None:
        return _redirect("/ui/login")
    ctx = _ctx(request)
    body = build(ctx)
    return _html(page(title, body, active=active, domain=ctx.domain.name,
                      csrf=session.csrf_token(ctx.domain, s)))  # fmt: skip


# --- formatting -------------------------------------------------------------------------------


def _when(moment: dt.datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(delta: dt.timedelta) -> str:
    """``3 d 4 h``, ``5 h 2 min``, ``40 s``; negative spans as ``-...``."""
    sign, s = ("-" if delta.total_seconds() < 0 else ""), int(abs(delta.total_seconds()))
    d, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if d:
        return f"{sign}{d} d {hours} h"
    if hours:
        return f"{sign}{hours} h {minutes} min"
    return f"{sign}{minutes} min" if minutes else f"{sign}{s} s"


def _badge(text: str, cls: str) -> Safe:
    return h('<span class="badge {}">{}</span>', cls, text)


def _verdict(accepted: bool) -> Safe:
    return _badge("accepted", "ok") if accepted else _badge("refused", "bad")


def _card(title: str, body: Safe) -> Safe:
    return h('<section class="card"><h2>{}</h2>{}</section>', title, body)


def _dl(pairs: list[tuple[str, object]]) -> Safe:
    return h('<dl class="claims">{}</dl>',
             join(h("<dt>{}</dt><dd>{}</dd>", k, v) for k, v in pairs))  # fmt: skip


def _code(text: object) -> Safe:
    return h("<code>{}</code>", text)


# --- sign-in ----------------------------------------------------------------------------------


def _login_page(error: str | None = None) -> Safe:
    message = h('<p class="error">{}</p>', error) if error else Safe("")
    form = h(
        '<form class="login" method="post" action="/ui/login">{}'
        "<p>Sign in with the domain's admin credential (the file <code>admin_token</code> "
        "written by <code>veritee init</code>).</p>"
        '<label for="token">Admin credential</label>'
        '<input id="token" name="token" type="password" autocomplete="off" required autofocus>'
        '<button type="submit">Sign in</button></form>',
        message,
    )
    return page("Sign in", form)


@router.get("")
def ui_root() -> Response:
    return _redirect("/ui/")


@router.get("/login")
def login_form(request: Request) -> Response:
    if _session(request) is not None:
        return _redirect("/ui/")
    return _html(_login_page())


def _same_origin(request: Request) -> bool:
    """A form post from a page of this service (or from no page: a tool that sends no Origin)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


def _form(body: bytes) -> dict[str, str]:
    """A small url-encoded form's fields (the first value of each); empty if it is not one."""
    try:
        fields = parse_qs(body.decode("ascii"), max_num_fields=4)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[0] for k, v in fields.items() if v}


@router.post("/login")
async def login(request: Request) -> Response:
    if not _same_origin(request):
        return _html(_login_page("Refused: the form was sent from another site."), 403)
    body = await request.body()
    if len(body) > MAX_LOGIN_BODY:
        return _html(_login_page("Refused: the form is too large."), 413)
    token = _form(body).get("token", "").strip()
    ctx = _ctx(request)
    if not token or not ctx.domain.check_admin(token):
        log.warning("console sign-in refused: the admin credential is not valid")
        return _html(_login_page("That is not this domain's admin credential."), 401)
    value, s = session.issue(ctx.domain, ctx.now())
    resp = _redirect("/ui/")
    resp.set_cookie(
        session.COOKIE_NAME, value, max_age=int(session.SESSION_LIFETIME.total_seconds()),
        path="/ui", httponly=True, samesite="strict", secure=request.url.scheme == "https",
    )  # fmt: skip
    log.info("console sign-in; session until %s", s.expires_at.isoformat())
    return resp


@router.post("/logout")
async def logout(request: Request) -> Response:
    s = _session(request)
    if s is None:
        return _html(_login_page("You are not signed in."), 401)
    body = await request.body()
    given = _form(body).get("csrf") if len(body) <= MAX_LOGIN_BODY else None
    if not _same_origin(request) or not session.csrf_ok(_ctx(request).domain, s, given):
        return _html(
            page("Refused", h("<p>{}</p>", "The sign-out form was not this session's.")), 403
        )
    resp = _redirect("/ui/login")
    resp.delete_cookie(session.COOKIE_NAME, path="/ui", httponly=True, samesite="strict",
                       secure=request.url.scheme == "https")  # fmt: skip
    return resp


# --- health -------------------------------------------------------------------------------------


def _health(ctx: ServiceContext) -> Safe:
    now = ctx.now()
    try:
        ctx.storage.check(now=now, timeout=ctx.settings.readiness_timeout)
        ready = _badge("ready", "ok")
    except StorageError as e:
        ready = h("{} {}", _badge("not ready", "bad"), _code(f"{e.code}: {e.message}"))
    with ctx.storage.transaction(readonly=True) as tx:
        in_force = tx.policies_in_force()
        head, head_hash = tx.audit_head()
        recent = data.decisions(data.recent_entries(tx, 2000))
    hour = [d for d in recent if d.at >= now - dt.timedelta(hours=1)]
    items = ctx.collateral_items()
    warn = ctx.settings.collateral_warn_before
    states = Counter(i.state(now, warn) for i in items)
    d = ctx.domain
    service = _dl([
        ("state", ready),
        ("version", __version__),
        ("domain", d.name),
        ("up for", _span(dt.timedelta(seconds=time.time() - _STARTED))),
        ("database", ctx.storage.dialect),
        ("audit log", h("{} entries, head {}", head, _code(head_hash.hex()[:16]))),
        ("policies in force", ", ".join(f"{p.name} v{p.version}" for p in in_force) or "none"),
    ])  # fmt: skip
    last_hour = _dl(
        [
            ("accepted", h('<span class="ok">{}</span>', sum(1 for x in hour if x.accepted))),
            ("refused", h('<span class="bad">{}</span>', sum(1 for x in hour if not x.accepted))),
        ]
    )
    stale = states.get("expired", 0)
    coll = _dl([
        ("readiness", readiness(items, now, warn).status),
        ("items", len(items)),
        ("stale", h('<span class="{}">{}</span>', "bad" if stale else "ok", stale)),
        (f"within {_span(warn)} of their next update", states.get("warning", 0)),
        ("rolled back (not used)", len(ctx.rolled_back)),
        ("sets that do not verify", len(ctx.unverified)),
    ])  # fmt: skip
    keys = _dl([
        ("domain CA valid until", _when(d.ca_certificate.not_valid_after_utc)),
        ("key broker certificate valid until", _when(d.broker_certificate.not_valid_after_utc)),
        ("token key id", _code(d.token_kid)),
        ("nonce lifetime", _span(ctx.settings.nonce_ttl)),
        ("attester collateral accepted", ctx.settings.accept_attester_collateral),
    ])  # fmt: skip
    return h('<div class="grid">{}{}{}{}</div>', _card("Service", service),
             _card("Decisions in the last hour", last_hour),
             _card("Collateral", h('{}<p><a href="/ui/collateral">{}</a></p>', coll, "freshness per item")),
             _card("Keys and settings", keys))  # fmt: skip


@router.get("/")
def health(request: Request) -> Response:
    return _signed_in_page(request, "Health", "health", _health)


# --- decisions ----------------------------------------------------------------------------------


@router.get("/decisions")
def decisions_page(
    request: Request, span: str = Query("24h", alias="range", max_length=8)
) -> Response:
    chosen = span if span in data.RANGES else "24h"

    def build(ctx: ServiceContext) -> Safe:
        now = ctx.now()
        length, count = data.RANGES[chosen]
        with ctx.storage.transaction(readonly=True) as tx:
            entries = data.recent_entries(tx)
        items = [d for d in data.decisions(entries) if d.at >= now - length * count]
        labels, series = data.buckets(items, now=now, length=length, count=count)
        picker = join(
            (h('<a href="{}">{}</a>', attr_url("/ui/decisions", range=r), r) if r != chosen else h("<b>{}</b>", r)
             for r in data.RANGES), " \u00b7 ",
        )  # fmt: skip
        note = Safe("")
        if len(entries) >= data.WINDOW:
            note = h('<p class="muted">Drawn from the newest {} audit entries (since {}).</p>',
                     data.WINDOW, _when(data.parse_at(entries[0].at)))  # fmt: skip
        accepted = sum(1 for d in items if d.accepted)
        return join([
            h('<p>Range: {} &#8212; {} decisions, <span class="ok">{} accepted</span>, '
              '<span class="bad">{} refused</span>.</p>{}', picker, len(items), accepted, len(items) - accepted, note),
            _card("Accepted and refused over time",
                  charts.stacked_columns(labels, series, title=f"Decisions per bucket, last {chosen}")),
            _card("By platform", charts.bars(data.by_platform(items), title="Decisions by platform",
                                             series=("accepted", "refused"))),
            _card("By platform over time", charts.stacked_columns(*data.series_by(
                items, lambda d: {d.platform}, now=now, length=length, count=count),
                title=f"Decisions per platform and bucket, last {chosen}")),
            _card("Refusals by reason", charts.bars(data.by_reason(items), title="Refusals by reason code",
                                                    series=("refused",))),
            _card("Refusals by reason over time", charts.stacked_columns(*data.series_by(
                items, data.reason_codes, now=now, length=length, count=count),
                title=f"Refusals per reason code and bucket, last {chosen}")),
        ])  # fmt: skip

    return _signed_in_page(request, "Decisions over time", "decisions", build)


def _decision_card(d: data.Decision) -> Safe:
    reasons = (
        h('<ul class="reasons">{}</ul>', join(h("<li>{} {}</li>", _code(c), m) for c, m in d.reasons))
        if d.reasons else Safe('<p class="muted">no reason recorded</p>')
    )  # fmt: skip
    if d.warnings:
        reasons = h('{}<p class="warn">warnings: {}</p>', reasons, ", ".join(d.warnings))
    claims = _dl([(k, _code(data.compact(v))) for k, v in sorted(d.claims.items())])
    return h(
        '<article class="decision {}"><header><b>#{}</b> {} {} <b>{}</b> on {}</header>'
        '<div class="cols"><div><h3>Reasons</h3>{}</div><div><h3>Claims recorded</h3>{}</div></div></article>',
        "accepted" if d.accepted else "refused", d.seq, _when(d.at), _verdict(d.accepted), d.kind, d.platform,
        reasons, claims,
    )  # fmt: skip


@router.get("/decisions/latest")
def latest_page(request: Request, outcome: str = Query("all", max_length=10)) -> Response:
    chosen = outcome if outcome in ("all", "accepted", "refused") else "all"

    def build(ctx: ServiceContext) -> Safe:
        with ctx.storage.transaction(readonly=True) as tx:
            shown = data.latest_decisions(
                tx, LATEST, lambda d: chosen == "all" or d.accepted == (chosen == "accepted")
            )
        picker = join(
            (h('<a href="{}">{}</a>', attr_url("/ui/decisions/latest", outcome=o), o) if o != chosen
             else h("<b>{}</b>", o) for o in ("all", "accepted", "refused")), " \u00b7 ",
        )  # fmt: skip
        cards = join(_decision_card(d) for d in shown) or h(
            '<p class="empty">{}</p>', "no decision yet"
        )
        return h("<p>Show: {}</p>{}", picker, cards)

    return _signed_in_page(request, "Latest decisions", "latest", build)


# --- audit ----------------------------------------------------------------------------------------


@router.get("/audit")
def audit_page(request: Request, anchor: str | None = Query(None, max_length=4096)) -> Response:
    def build(ctx: ServiceContext) -> Safe:
        from veritee.anchors import check_log_against, read_anchor

        report = operations.audit_verify(_ctx(request))
        head = operations.audit_head(_ctx(request))
        state = _dl([
            ("chain", _badge("intact", "ok") if report["ok"] else _badge("broken", "bad")),
            ("entries", report["count"]),
            ("first broken entry", report["first_broken"]),
            ("check", report["message"]),
            ("head", h("entry {} {}", head["seq"], _code(head["entry_hash"]))),
        ])  # fmt: skip
        fresh = h(
            "<p>The head, signed now with the domain's token key. Keep it outside the database "
            "(a file, a ticket); <code>veritee audit verify --anchor FILE</code> or the form "
            'below shows later whether the log was truncated or rewritten.</p>'
            '<textarea rows="4" readonly>{}</textarea>', head["anchor"],
        )  # fmt: skip
        result = Safe("")
        if anchor:
            try:
                a = read_anchor(anchor, ctx.domain.token_key.public_key())
                check_log_against(ctx.storage, [a])
                result = h('<p class="ok">The log still holds entry {} with the hash this anchor '
                           "(signed {}) names.</p>", a.seq, _when(a.signed_at))  # fmt: skip
            except VeriteeError as e:
                result = h('<p class="bad">{} {}</p>', _code(e.code), e.message)
        check = h(
            '<form method="get" action="/ui/audit"><textarea name="anchor" rows="4" '
            'placeholder="an anchor (veritee-audit-head+jwt)"></textarea>'
            '<button type="submit">Check this anchor</button></form>{}', result,
        )  # fmt: skip
        with ctx.storage.transaction(readonly=True) as tx:
            entries = data.recent_entries(tx, 30)
        rows = [
            [e.seq, _when(data.parse_at(e.at)), e.kind, e.actor, _code(e.subject), e.decision,
             _code(data.compact(dict(e.details))[:300]), _code(e.entry_hash.hex()[:16])]
            for e in reversed(entries)
        ]  # fmt: skip
        return join([
            _card("Hash chain", state), _card("Anchor of the head", fresh),
            _card("Check an anchor", check),
            _card("Newest entries", table(["#", "at", "kind", "actor", "subject", "decision",
                                           "details", "entry hash"], rows)),
        ])  # fmt: skip

    return _signed_in_page(request, "Audit chain", "audit", build)


# --- policies -------------------------------------------------------------------------------------


@router.get("/policies")
def policies_page(request: Request) -> Response:
    def build(ctx: ServiceContext) -> Safe:
        with ctx.storage.transaction(readonly=True) as tx:
            in_force = tx.policies_in_force()
            every = tx.list_policies("appraisal")
        now_rows = [
            [p.name, p.version, _when(p.created_at), _code(p.digest[:16])] for p in in_force
        ]
        newest = {p.name: p.version for p in every}  # ordered by name, version
        history: list[list[object]] = []
        for p in reversed(every):
            diff = (
                h('<a href="{}">{}</a>', attr_url("/ui/policies/diff", name=p.name, a=p.version - 1, b=p.version),
                  f"diff v{p.version - 1} \u2192 v{p.version}")
                if p.version > 1 else Safe('<span class="muted">first version</span>')
            )  # fmt: skip
            state = (_badge("in force", "ok") if p.active else _badge("superseded", "mute")
                     if p.version < newest[p.name] else _badge("retired", "warn"))  # fmt: skip
            history.append(
                [p.name, p.version, _when(p.created_at), p.actor, state, _code(p.digest[:16]), diff]
            )
        versions: dict[str, list[int]] = {}
        for p in every:
            versions.setdefault(p.name, []).append(p.version)
        forms = join(
            h('<form method="get" action="/ui/policies/diff" class="inline"><input type="hidden" name="name" '
              'value="{}">{} version <select name="a">{}</select> against <select name="b">{}</select> '
              '<button type="submit">Compare</button></form>', name, _code(name),
              join(h('<option value="{}"{}>v{}</option>', v, Safe(" selected" if v == vs[-2] else ""), v) for v in vs),
              join(h('<option value="{}"{}>v{}</option>', v, Safe(" selected" if v == vs[-1] else ""), v) for v in vs))
            for name, vs in versions.items() if len(vs) > 1
        )  # fmt: skip
        return join([
            _card("In force", table(["name", "version", "installed", "envelope SHA-256"], now_rows)),
            _card("Compare two versions", forms or h('<p class="empty">{}</p>', "every policy has one version")),
            _card("History", table(["name", "version", "installed", "by", "state", "envelope SHA-256",
                                    "change"], history)),
        ])  # fmt: skip

    return _signed_in_page(request, "Policies", "policies", build)


def _policy_text(ctx: ServiceContext, name: str, version: int) -> list[str] | str:
    with ctx.storage.transaction(readonly=True) as tx:
        stored = tx.policy_version(name, version)
    if stored is None:
        return f"policy {name!r} has no version {version}"
    try:
        signed = ctx.domain.verify_policy(stored.document, stored=True)
    except VeriteeError as e:
        return f"version {version} does not verify: {e.message}"
    return json.dumps(signed.policy.to_json(), indent=2, sort_keys=True).splitlines()


@router.get("/policies/diff")
def policy_diff_page(
    request: Request,
    name: str = Query(min_length=1, max_length=200),
    a: int = Query(ge=0, le=2**31),
    b: int = Query(ge=1, le=2**31),
) -> Response:
    def build(ctx: ServiceContext) -> Safe:
        new = _policy_text(ctx, name, b)
        old = _policy_text(ctx, name, a) if a >= 1 else []
        if isinstance(new, str) or isinstance(old, str):
            return h('<p class="bad">{}</p>', new if isinstance(new, str) else old)
        lines = []
        for line in difflib.unified_diff(
            old, new, f"{name} v{a}", f"{name} v{b}", lineterm="", n=3
        ):
            cls = ("hunk" if line.startswith(("@@", "---", "+++")) else "add" if line.startswith("+")
                   else "del" if line.startswith("-") else "")  # fmt: skip
            lines.append(h('<span class="{}">{}</span>', cls, line) if cls else h("{}\n", line))
        diff = (
            h('<pre class="diff">{}</pre>', join(lines))
            if lines
            else h("<p>{}</p>", "no difference")
        )
        return join([
            h("<p>Policy {} version {} against version {}.</p>", _code(name), b, a), _card("Diff", diff),
            _card(f"Version {b} in full", h('<pre class="diff">{}</pre>', "\n".join(new))),
        ])  # fmt: skip

    return _signed_in_page(request, "Policy diff", "policies", build)


# --- secrets --------------------------------------------------------------------------------------

_RELEASE_KINDS = {"secret.release": True, "secret.deny": False,
                  "sealing_key.release": True, "sealing_key.deny": False}  # fmt: skip
#: Versions of one secret shown (the newest).
VERSIONS_SHOWN = 10


@router.get("/secrets")
def secrets_page(request: Request) -> Response:
    def build(ctx: ServiceContext) -> Safe:
        now = ctx.now()
        blocks: list[Safe] = []
        with ctx.storage.transaction(readonly=True) as tx:
            listed = tx.list_secrets()
            releases = [e for e in data.recent_entries(tx) if e.kind in _RELEASE_KINDS]
            for info in listed:
                rows = []
                for v in range(
                    info.latest_version, max(0, info.latest_version - VERSIONS_SHOWN), -1
                ):
                    stored = tx.secret_version(info.name, v)
                    if stored is None:
                        continue
                    policy = json.dumps(json.loads(stored.policy), indent=2, sort_keys=True)
                    rows.append([v, _when(stored.created_at), _code(stored.kek_id),
                                 "own policy only" if stored.keep_old_policies else "newest policy binds older versions",
                                 h('<pre class="diff">{}</pre>', policy)])  # fmt: skip
                blocks.append(_card(f"{info.name}", h(
                    "<p>{} version(s), newest v{}, first stored {}, last {}.</p>{}",
                    info.versions, info.latest_version, _when(info.created_at), _when(info.updated_at),
                    table(["version", "stored", "KEK", "older versions", "release policy"], rows))))  # fmt: skip
        items = [
            data.Decision(e.seq, data.parse_at(e.at), e.kind, _RELEASE_KINDS[e.kind], e.subject,
                          "", (), (), {})
            for e in releases
        ]  # fmt: skip
        length, count = data.RANGES["30d"]
        labels, series = data.buckets(items, now=now, length=length, count=count)
        per: dict[str, Counter[str]] = {}
        for d in items:
            per.setdefault(d.subject, Counter())["released" if d.accepted else "denied"] += 1
        chart = charts.stacked_columns(
            labels,
            {"released": series["accepted"], "denied": series["refused"]},
            title="Secret and sealing-key releases per day, last 30 days",
        )
        per_rows = charts.bars(sorted(((k, dict(v)) for k, v in per.items()), key=lambda kv: kv[0]),
                               title="Releases per secret", series=("released", "denied"))  # fmt: skip
        intro = h('<p class="muted">{}</p>', "Names, versions and release policies; never a value.")
        return join([intro, _card("Releases over time", chart), _card("Releases per secret", per_rows),
                     *(blocks or [h('<p class="empty">{}</p>', "no secrets stored")])])  # fmt: skip

    return _signed_in_page(request, "Secrets", "secrets", build)


# --- certificates ---------------------------------------------------------------------------------

#: How many of the newest admission certificates the page lists.
CERTIFICATES_SHOWN = 200


@router.get("/certificates")
def certificates_page(request: Request) -> Response:
    def build(ctx: ServiceContext) -> Safe:
        now = ctx.now()
        with ctx.storage.transaction(readonly=True) as tx:
            certs = tx.list_certificates(limit=CERTIFICATES_SHOWN)
            revocations = tx.revocations()
        states: Counter[str] = Counter()
        rows = []
        for c in certs:
            serial = format(c.serial, "x")
            left = c.not_after - now
            name, revoked = operations.certificate_state(
                c, revocations, now
            )  # as GET /v1/admin/certificates
            if revoked is not None:
                state = h("{} {}", _badge("revoked", "bad"), _when(revoked.revoked_at))
            else:
                state = _badge(name, {"expired": "mute", "expiring": "warn"}.get(name, "ok"))
            states[name] += 1
            rows.append([_code(serial), c.platform, _code(c.measurement), _when(c.not_before),
                         _when(c.not_after), _span(left) if left > dt.timedelta(0) else "-", state])  # fmt: skip
        summary = _dl([("listed (newest first)", len(certs)), ("valid", states["valid"]),
                       ("expiring (under a quarter of the lifetime left)", states["expiring"]),
                       ("expired", states["expired"]), ("revoked", states["revoked"])])  # fmt: skip
        rev_rows = [
            [r.kind, _code(r.value), r.reason, r.actor, _when(r.revoked_at)] for r in revocations
        ]
        return join([
            _card("Summary", summary),
            _card("Issued", table(["serial", "platform", "measurement", "issued", "not after", "left",
                                   "state"], rows)),
            _card("Revocations", table(["by", "value", "reason", "by whom", "when"], rev_rows)),
        ])  # fmt: skip

    return _signed_in_page(request, "Admission certificates", "certificates", build)


# --- collateral -----------------------------------------------------------------------------------

_KINDS = {"tcb_info": "TCB info", "qe_identity": "QE identity", "pck_crl": "PCK CRL",
          "root_crl": "root CA CRL", "crl": "CRL (VCEK/VLEK revocations)"}  # fmt: skip
#: The collateral status's item states as the console shows them (row class, badge).
_STATES = {"expired": ("stale", _badge("stale", "bad")), "warning": ("soon", _badge("soon", "warn")),
           "ok": ("fresh", _badge("fresh", "ok"))}  # fmt: skip


def _subject(kind: str, subject: str) -> str:
    """``TDX:B0C06F000000`` -> ``TDX FMSPC B0C06F000000``; ``ARK-Milan`` -> ``Milan``."""
    if kind == "tcb_info" and ":" in subject:
        ident, fmspc = subject.split(":", 1)
        return f"{ident} FMSPC {fmspc}"
    if kind == "crl" and subject.startswith("ARK-"):
        return subject.removeprefix("ARK-")
    if kind == "pck_crl" and subject in ("processor", "platform"):
        return f"PCK {subject} CA"
    return subject


def _left(seconds: float) -> str:
    if seconds <= 0:
        return f"stale for {_span(dt.timedelta(seconds=-seconds))}"
    days = int(seconds // 86400)
    return f"{days} days" if days else _span(dt.timedelta(seconds=seconds))


def _at(text: str | None) -> str:
    return "-" if not text else _when(dt.datetime.fromisoformat(text))


@router.get("/collateral")
def collateral_page(request: Request) -> Response:
    def build(ctx: ServiceContext) -> Safe:
        status = operations.collateral_status(_ctx(request))  # as GET /v1/admin/collateral
        rows = []
        for i in status["items"]:
            cls, badge = _STATES.get(i["state"], ("stale", _badge(i["state"], "bad")))
            cells = ({"amd": "AMD", "intel": "Intel"}.get(i["vendor"], i["vendor"]),
                     _subject(i["kind"], i["subject"]), _KINDS.get(i["kind"], i["kind"]), _at(i["issued"]),
                     _at(i["next_update"]), _left(i["seconds_left"]), badge)  # fmt: skip
            rows.append(
                Safe(
                    h('<tr class="{}">', cls)
                    + "".join(h("<td>{}</td>", c) for c in cells)
                    + "</tr>"
                )
            )
        head = join(
            h("<th>{}</th>", c)
            for c in (
                "vendor",
                "FMSPC / product / issuer",
                "item",
                "issued",
                "next update",
                "left",
                "state",
            )
        )
        tbl = (h("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, join(rows))
               if rows else h('<p class="empty">{}</p>', "no collateral loaded"))  # fmt: skip
        fetched = table(["file", "fetched", "checked", "next try", "failures", "last error"], [
            [_code(r["path"]), _at(r["fetched_at"]), _at(r["checked_at"]), _at(r["next_try"]), r["failures"],
             r["last_error"]] for r in status["fetched"]])  # fmt: skip
        fetching = status["fetching"]
        source = (h("<p>Fetched from {} and {}{}; when an attestation lacks collateral: {}.</p>",
                    _code(fetching["kds"]), _code(fetching["pccs"] or fetching["pcs"]),
                    " (a PCCS)" if fetching["pccs"] else "", "yes" if fetching["lazy"] else "no")
                  if fetching else h("<p>{}</p>", "Fetching is off (veritee serve --no-collateral-fetch): "
                                                  "only the collateral folder decides."))  # fmt: skip
        problems: list[Safe] = [
            h("<li>{} {}</li>", _code("collateral_rolled_back"),
              f"{found.describe()} is older than the {held.describe()} accepted before: not used")
            for found, held in ctx.rolled_back
        ]  # fmt: skip
        problems += [h("<li>{} {}</li>", _code("collateral_unverified"), u) for u in ctx.unverified]
        readiness = {"ok": _badge("ok", "ok"), "warning": _badge("warning", "warn")}.get(
            status["readiness"], _badge(status["readiness"], "bad")
        )
        warn = _span(ctx.settings.collateral_warn_before)
        return join([
            h("<p>Readiness of the collateral: {} (amber within {} of an item's next update, red past it). "
              "The folder is {}.</p>", readiness, warn, _code(str(ctx.domain.collateral_dir))),
            _card("Freshness", tbl),
            _card("Fetching", h("{}{}", source, fetched)),
            _card("Not used", h('<ul class="reasons">{}</ul>', join(problems)) if problems
                  else h('<p class="empty">{}</p>', "every set verifies and none is rolled back")),
        ])  # fmt: skip

    return _signed_in_page(request, "Collateral freshness", "collateral", build)
