"""The README's command list (section "Operating a domain from the command line") names every
command the `veritee` command line has, so an operator finds each one there."""

from __future__ import annotations

import re
from pathlib import Path

import click

from veritee.cli.main import _register, cli

_register()
README = Path(__file__).resolve().parents[3] / "README.md"


def _leaves(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            out += _leaves(cmd, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


def test_every_command_is_in_the_readme_list() -> None:
    text = README.read_text()
    section = text.split("## Operating a domain from the command line", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    listed: set[tuple[str, ...]] = set()
    for line in block.splitlines():
        if not line.startswith("veritee "):
            continue
        command = re.split(r"\s{2,}", line)[0].removeprefix("veritee ")  # before the comment
        words = [w for w in re.findall(r"(?<![-\w])[a-z][a-z-]*", command)]
        group = words[0] if words else ""
        for w in words:
            listed.add((w,))  # "init | serve | verify ..." names top-level commands
            listed.add((group, w))
    missing = [
        " ".join(c) for c in _leaves(cli) if c not in listed and c[:1] not in {("certificate",)}
    ]
    assert not missing, f"commands missing from the README's list: {missing}"
