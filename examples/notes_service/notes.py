"""A small notes service ported to veritee. THIS FILE is what gets measured
(``veritee measure examples/notes_service/notes.py``).

What the port changed, compared with the same app outside a TEE:

- ``Trust(...)`` at start, ``trust.certify()`` before serving;
- the receipt-signing key comes from the key broker (``trust.get_secret``), released only to
  measurements the domain admits, instead of from an environment variable;
- the notes file is sealed with ``sealing="domain"``: the next version the operator admits
  (``veritee admit``) opens it, a program the operator did not admit cannot;
- TLS is the workload's admission certificate (``trust.server_ssl_context``): clients must be
  admitted workloads too, with a measurement this service allows;
- uvicorn runs with ``log_config=None`` so that its loggers reach the root logger, which in
  staging and production ``Trust`` routes into the confidential log (the host sees catalogue
  codes only).

    python examples/notes_service/notes.py --url https://127.0.0.1:8400 --ca DATA/domain_ca.pem \\
        --store state/ --port 8443 --client-measurement <client's measurement>
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import signal
import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from veritee import ChannelPolicy, Trust

VERSION = "1"
SEALED = "notes.sealed"
CONTEXT = b"notes-service/notes"  # what the sealed file is: another file cannot take its place


class Notes:
    """The app's state: a list of notes, kept in one sealed file under the store."""

    def __init__(self, trust: Trust, path: Path) -> None:
        self.trust, self.path = trust, path
        self.items: list[dict[str, object]] = []
        if path.exists():
            self.items = json.loads(trust.unseal(path.read_bytes(), context=CONTEXT))

    def add(self, text: str) -> dict[str, object]:
        note = {"id": len(self.items) + 1, "text": text, "version": VERSION}
        self.items.append(note)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(self.trust.seal(json.dumps(self.items).encode(), context=CONTEXT))
        os.replace(tmp, self.path)  # a crash leaves the old file or the new one, never half
        return note


def build_app(trust: Trust, notes: Notes, signing_key: bytes) -> Starlette:
    def receipt(note: dict[str, object]) -> str:
        return hmac.new(
            signing_key, json.dumps(note, sort_keys=True).encode(), hashlib.sha256
        ).hexdigest()

    async def list_notes(request: Request) -> JSONResponse:
        return JSONResponse({"notes": notes.items, "version": VERSION})

    async def add_note(request: Request) -> JSONResponse:
        body = await request.json()
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not 0 < len(text) <= 10_000:
            return JSONResponse(
                {"error": 'give {"text": "..."} (1 to 10000 characters)'}, status_code=400
            )
        note = notes.add(text)
        trust.logger.info("note %s added", note["id"])  # confidential log: the host sees no text
        return JSONResponse({"note": note, "receipt": receipt(note)}, status_code=201)

    return Starlette(routes=[Route("/notes", list_notes, methods=["GET"]),
                             Route("/notes", add_note, methods=["POST"])])  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--url", required=True, help="the Certifier Service (https://...)")
    ap.add_argument(
        "--ca", required=True, type=Path, help="the domain CA certificate (domain_ca.pem)"
    )
    ap.add_argument(
        "--store", required=True, type=Path, help="this service's folder (keys, logs, notes)"
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8443)
    ap.add_argument(
        "--client-measurement",
        action="append",
        default=[],
        required=True,
        help="a client measurement to admit (repeat for several)",
    )
    ap.add_argument("--platform", default="auto", help="auto, simulated, sev-snp, tdx, ...")
    ap.add_argument("--platform-dir", type=Path, default=None, help="simulated platform folder")
    ap.add_argument("--profile", default="production")
    args = ap.parse_args(argv)

    trust = Trust(
        args.url,
        args.ca,
        platform=args.platform,
        platform_dir=args.platform_dir,
        profile=args.profile,
        store=args.store / "trust",  # keys and certificate (per measurement), the log
        measure=[Path(__file__)],  # what the simulated platform measures: this file
        sealing="domain",  # sealed notes survive an upgrade the domain admits
        appraisal_policy="notes",  # the appraisal policy that admits this service
        tenant_key_secret="notes/log-tenant",  # noqa: S106  (a secret name: the log is for the tenant only)
    )
    try:
        trust.certify()
        notes = Notes(trust, args.store / SEALED)
        app = build_app(trust, notes, trust.get_secret("notes/receipt-key"))
        clients = ChannelPolicy.allow(measurements=args.client_measurement)
        trust.logger.info("notes service version %s: %d notes", VERSION, len(notes.items))
        # uvicorn stops gracefully on SIGTERM, then re-raises it: exit through `finally` instead
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_config=None,
            ssl_context_factory=lambda config, default: trust.server_ssl_context(policy=clients),
        )
    finally:
        trust.close()


if __name__ == "__main__":
    main()
