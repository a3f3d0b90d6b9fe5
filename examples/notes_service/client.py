"""A client of the notes service, itself an admitted workload (its own measurement: this file).

It reaches the service with ``trust.httpx_client``: the connection is refused, before any
request is sent, unless the server presents an admission certificate of the domain for one of
the ``--server-measurement`` values.

    python examples/notes_service/client.py --url https://127.0.0.1:8400 --ca DATA/domain_ca.pem \\
        --store client-state/ --service https://127.0.0.1:8443 --server-measurement M add "text"
    python examples/notes_service/client.py ... list
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from veritee import ChannelPolicy, Trust
from veritee.errors import VeriteeError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--url", required=True, help="the Certifier Service (https://...)")
    ap.add_argument("--ca", required=True, type=Path, help="the domain CA certificate")
    ap.add_argument("--store", required=True, type=Path, help="this client's key store folder")
    ap.add_argument("--service", required=True, help="the notes service, https://host:port")
    ap.add_argument(
        "--server-measurement",
        action="append",
        required=True,
        help="a measurement of the notes service to accept (repeat for several)",
    )
    ap.add_argument("--platform", default="auto")
    ap.add_argument("--platform-dir", type=Path, default=None)
    ap.add_argument("--profile", default="production")
    ap.add_argument("command", choices=["add", "list"])
    ap.add_argument("text", nargs="?")
    args = ap.parse_args(argv)

    try:
        with Trust(
            args.url,
            args.ca,
            platform=args.platform,
            platform_dir=args.platform_dir,
            profile=args.profile,
            store=args.store,
            measure=[Path(__file__)],
        ) as trust:
            policy = ChannelPolicy.allow(measurements=args.server_measurement)
            with trust.httpx_client(policy=policy, base_url=args.service, timeout=30) as http:
                if args.command == "add":
                    r = http.post("/notes", json={"text": args.text or ""})
                else:
                    r = http.get("/notes")
    except VeriteeError as e:
        print(f"refused [{e.code}]: {e.message}", file=sys.stderr)
        return 1
    print(json.dumps(r.json()))
    return 0 if r.is_success else 1


if __name__ == "__main__":
    sys.exit(main())
