"""Core commands: init, serve, verify, measure, demo, audit."""

from __future__ import annotations

import click

__all__ = ["register"]


def register(group: click.Group) -> None:
    pass
