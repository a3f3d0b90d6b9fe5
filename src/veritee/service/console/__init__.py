"""The web console at ``/ui``: server-rendered pages for a domain's operator.

Signing in takes the admin credential (the admin API's bearer credential) once; the browser
then holds a signed, expiring session cookie (:mod:`.session`). Pages are read-only GETs; the
one form that changes anything (signing out) carries a CSRF token. Nothing is fetched from
elsewhere at runtime: the CSS is inline, the charts are SVG drawn here (:mod:`.charts`), and
there is no script at all (the Content-Security-Policy allows none).

Pages: health (``/ui/``), decisions over time (``/ui/decisions``), the latest decisions with
every reason and the recorded claims (``/ui/decisions/latest``), the audit chain and its
anchors (``/ui/audit``), the policies in force and their history with diffs
(``/ui/policies``, ``/ui/policies/diff``), secrets (``/ui/secrets``: names, versions, release
policies, releases over time; never values), admission certificates (``/ui/certificates``) and
collateral freshness (``/ui/collateral``).
"""

from veritee.service.console.routes import router

__all__ = ["router"]
