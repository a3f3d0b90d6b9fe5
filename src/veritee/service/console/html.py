"""HTML for the web console, escaped by construction.

Every page is built from :class:`Safe` fragments: :func:`h` formats a constant template with
arguments that are escaped (``html.escape``, quotes included) unless they are ``Safe`` already,
so text from the database (reasons, claims, policy names, audit subjects) can only ever be text.
There is no script on any page, and the pages are served with a Content-Security-Policy that
allows none (:data:`CSP`): an escaping mistake could still not run code.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterable
from urllib.parse import quote, urlencode

__all__ = ["CSP", "CSS", "Safe", "attr_url", "esc", "h", "join", "page", "table"]


class Safe(str):
    """Text that is HTML already: built by this module from escaped parts."""

    __slots__ = ()


def esc(value: object) -> Safe:
    """``value`` as HTML text (``Safe`` fragments pass through; None is a dash)."""
    if isinstance(value, Safe):
        return value
    if value is None:
        return Safe("&#8211;")
    if isinstance(value, bool):
        value = "yes" if value else "no"
    return Safe(html.escape(str(value), quote=True))


def _arg(value: object) -> object:
    # Numbers stay numbers (a template may give them a format spec); they hold no markup.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return esc(value)


def h(template: str, *args: object, **kwargs: object) -> Safe:
    """``template`` (a constant) with every argument escaped (:func:`esc`)."""
    return Safe(
        template.format(*(_arg(a) for a in args), **{k: _arg(v) for k, v in kwargs.items()})
    )


def join(parts: Iterable[Safe], sep: str = "") -> Safe:
    return Safe(sep.join(esc(p) for p in parts))


def attr_url(path: str, **query: object) -> str:
    """A console URL (always under ``/ui/``) with its query escaped; the result still goes
    through :func:`esc` as an attribute value."""
    if not path.startswith("/ui/"):
        raise ValueError("console links stay under /ui/")
    q = {k: str(v) for k, v in query.items() if v is not None}
    return quote(path, safe="/") + ("?" + urlencode(q) if q else "")


def table(headers: Iterable[str], rows: Iterable[Iterable[object]], *, cls: str = "") -> Safe:
    """A table; cells are escaped unless ``Safe``."""
    head = join(h("<th>{}</th>", c) for c in headers)
    body = join(Safe("<tr>" + "".join(h("<td>{}</td>", c) for c in row) + "</tr>") for row in rows)
    if not body:
        return h('<p class="empty">{}</p>', "nothing recorded yet")
    return h(
        '<table class="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', cls, head, body
    )


CSS = """
:root{--ok:#1b7f3b;--bad:#b3261e;--warn:#a15c00;--ink:#1d1f23;--mute:#5f6670;--line:#d9dce1;--bg:#f6f7f9}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
body>header{background:#20232a;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;align-items:center;flex-wrap:wrap}
body>header .brand{font-weight:700;letter-spacing:.02em}
body>header nav a{color:#cfd3da;text-decoration:none;margin-right:.9rem}
body>header nav a.on{color:#fff;border-bottom:2px solid #7cc4ff}
body>header form{margin-left:auto}
body>header button{background:transparent;color:#cfd3da;border:1px solid #555;border-radius:4px;padding:.2rem .6rem;cursor:pointer}
main{padding:1rem 1.2rem;max-width:1280px}
h1{font-size:1.35rem;margin:.2rem 0 1rem}
h2{font-size:1.05rem;margin:0 0 .5rem}
h3{font-size:.85rem;color:var(--mute);margin:.2rem 0}
article.decision{background:#fff;border:1px solid var(--line);border-left:5px solid var(--ok);border-radius:4px;padding:.5rem .8rem;margin-bottom:.7rem}
article.decision.refused{border-left-color:var(--bad)}
article.decision>header{display:flex;gap:.7rem;align-items:center;flex-wrap:wrap;margin-bottom:.3rem}
article.decision .cols{display:grid;grid-template-columns:1fr 1fr;gap:1rem}
li,dd{overflow-wrap:anywhere}
th{white-space:nowrap}
section.card{background:#fff;border:1px solid var(--line);border-radius:6px;padding:.8rem 1rem;margin-bottom:1rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);vertical-align:top;overflow-wrap:break-word}
th{font-weight:600;color:var(--mute);font-size:.85rem}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.82rem;word-break:break-all}
.ok{color:var(--ok);font-weight:600}.bad{color:var(--bad);font-weight:600}.warn{color:var(--warn);font-weight:600}
.badge{display:inline-block;border-radius:3px;padding:0 .4rem;font-size:.8rem;font-weight:600;color:#fff}
.badge.ok{background:var(--ok);color:#fff}.badge.bad{background:var(--bad);color:#fff}.badge.warn{background:var(--warn);color:#fff}
.badge.mute{background:#8a9099}
tr.stale td{background:#fde8e7}tr.soon td{background:#fff4e0}
.empty{color:var(--mute);font-style:italic}
ul.reasons{margin:0;padding-left:1.1rem}
dl.claims{display:grid;grid-template-columns:max-content 1fr;gap:.1rem .8rem;margin:0}
dl.claims dt{color:var(--mute)}dl.claims dd{margin:0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:1rem}
.stat{font-size:1.6rem;font-weight:700}
.muted{color:var(--mute)}
pre.diff{background:#fff;border:1px solid var(--line);padding:.6rem;overflow:auto;font-size:.82rem}
pre.diff .add{background:#e6f4ea;color:#0d652d;display:block}
pre.diff .del{background:#fce8e6;color:#a50e0e;display:block}
pre.diff .hunk{color:#5f6670;display:block}
textarea{width:100%;font-family:ui-monospace,monospace;font-size:.8rem}
form.login{max-width:420px;margin:4rem auto;background:#fff;border:1px solid var(--line);border-radius:6px;padding:1.2rem}
form.login input{width:100%;padding:.4rem;font:inherit;margin:.4rem 0 .8rem}
form.login button,form.inline button{padding:.35rem .9rem;font:inherit;cursor:pointer}
p.error{color:var(--bad);font-weight:600}
svg text{font-family:system-ui,sans-serif;font-size:11px;fill:#333}
"""

_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()

#: No script, no frame, no outside resource; the one inline style block by its hash.
CSP = (
    "default-src 'none'; "
    f"style-src 'sha256-{_CSS_HASH}'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

NAV = (
    ("health", "/ui/", "Health"),
    ("decisions", "/ui/decisions", "Decisions"),
    ("latest", "/ui/decisions/latest", "Latest decisions"),
    ("audit", "/ui/audit", "Audit chain"),
    ("policies", "/ui/policies", "Policies"),
    ("secrets", "/ui/secrets", "Secrets"),
    ("certificates", "/ui/certificates", "Certificates"),
    ("collateral", "/ui/collateral", "Collateral"),
)


def page(
    title: str, body: Safe, *, active: str = "", domain: str = "", csrf: str | None = None
) -> Safe:
    """A whole page: the navigation (when signed in: ``csrf`` is the session's token for the
    sign-out form) and ``body``."""
    nav = Safe("")
    logout = Safe("")
    if csrf is not None:
        nav = join(
            h('<a href="{}" class="{}">{}</a>', href, "on" if key == active else "", label)
            for key, href, label in NAV
        )
        logout = h(
            '<form method="post" action="/ui/logout" class="inline">'
            '<input type="hidden" name="csrf" value="{}"><button type="submit">Sign out</button></form>',
            csrf,
        )
    return h(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        "<title>{} &#8211; veritee console</title><style>{}</style></head><body>"
        '<header><span class="brand">veritee</span><span class="muted">{}</span>'
        "<nav>{}</nav>{}</header><main><h1>{}</h1>{}</main></body></html>",
        title, Safe(CSS), domain, nav, logout, title, body,
    )  # fmt: skip
