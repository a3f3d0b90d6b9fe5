"""``veritee demo``: the end-to-end walkthroughs (attest, cleanroom)."""

from __future__ import annotations

import click

from veritee.cli.exits import handle_errors

__all__ = ["demo_cmd", "register"]


@click.command("demo")
@click.argument(
    "which", required=False, type=click.Choice(["attest", "cleanroom"]), default="attest"
)
@handle_errors
def demo_cmd(which: str) -> None:
    """End-to-end walkthrough on a temporary embedded database."""
    if which == "cleanroom":
        from veritee.demo_cleanroom import run_cleanroom_demo

        run_cleanroom_demo()
        return
    from veritee.demo import run_demo

    run_demo()


def register(group: click.Group) -> None:
    group.add_command(demo_cmd)
