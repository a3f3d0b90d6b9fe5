"""``veritee serve --config FILE``: the service's flags in a TOML file.

Every flag of ``veritee serve`` has a key: the flag's long name without its dashes (``--db`` is
``db``, ``--trusted-proxy`` is ``trusted-proxy``, ``--tls/--no-tls`` is ``tls = true|false``).
A flag given on the command line wins over the file. The keys are read off the command's own
options, so a flag added to ``serve`` is a key at once, of the same type:

========================  ==========================================================
flag kind                 TOML value
========================  ==========================================================
on/off (``--tls``)        boolean
number (``--port``)       integer, in the flag's range
repeatable                array of strings
path (``--data``)         string; relative to the file's folder
choice, text              string (a choice among the flag's)
========================  ==========================================================

An unknown key, a table, a value of another type, a file that is not TOML (or not UTF-8), larger
than :data:`MAX_CONFIG_BYTES` or not a regular file: a usage error (exit 2) naming the file and
the key.
"""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path
from typing import Any

import click

__all__ = ["MAX_CONFIG_BYTES", "config_keys", "load_config"]

MAX_CONFIG_BYTES = 64 * 1024
#: Options that have no key (the file itself, and help).
NOT_KEYS = frozenset({"config", "help"})


def config_keys(command: click.Command) -> dict[str, click.Option]:
    """The file's keys for ``command``: each option's first long name without its dashes."""
    keys: dict[str, click.Option] = {}
    for param in command.params:
        if not isinstance(param, click.Option) or param.name in NOT_KEYS or param.name is None:
            continue
        long = next((o for o in param.opts if o.startswith("--")), None)
        if long is not None:
            keys[long[2:]] = param
    return keys


def _kind(param: click.Option) -> str:
    if param.is_flag or isinstance(param.type, click.types.BoolParamType):
        return "boolean"
    if isinstance(param.type, click.types.IntParamType):
        return "integer"
    if isinstance(param.type, click.types.FloatParamType):
        return "number"
    return "string"


def _check_type(value: Any, kind: str) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def _read(path: Path) -> dict[str, Any]:
    try:
        info = path.stat()
    except OSError as e:
        raise click.BadParameter(f"{path}: {e.strerror or e}") from None
    if not stat.S_ISREG(info.st_mode):
        raise click.BadParameter(f"{path} is not a regular file")
    if info.st_size > MAX_CONFIG_BYTES:
        raise click.BadParameter(
            f"{path} is {info.st_size} bytes; a configuration is at most {MAX_CONFIG_BYTES}"
        )
    with path.open("rb") as f:
        raw = f.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:  # grew since stat
        raise click.BadParameter(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise click.BadParameter(f"{path} is not UTF-8 text (byte {e.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise click.BadParameter(f"{path} is not valid TOML: {e}") from None
    except RecursionError:
        raise click.BadParameter(f"{path} is nested too deeply") from None


def load_config(path: Path, ctx: click.Context) -> dict[str, Any]:
    """The file's settings as ``{parameter name: value}`` for ``ctx.default_map``, checked
    against ``ctx.command``'s options (their types and ranges); click.BadParameter else."""
    doc = _read(path)
    db = doc.get("db")
    if isinstance(db, str) and _has_password(db) and path.stat().st_mode & 0o077:
        click.echo(f"warning: {path} holds a database password and others may read it "
                   "(chmod 600 it, or keep the password out of the file: libpq's PGPASSFILE)",
                   err=True)  # fmt: skip
    keys = config_keys(ctx.command)
    out: dict[str, Any] = {}
    for key, value in doc.items():
        param = keys.get(key)
        if param is None:
            raise click.BadParameter(
                f"{path}: unknown key {key!r} (the keys are: {', '.join(sorted(keys))})"
            )
        kind = _kind(param)
        where = f"{path}: {key}"
        if param.multiple:
            if not isinstance(value, list) or not all(_check_type(v, kind) for v in value):
                raise click.BadParameter(
                    f"{where} must be an array of {kind}s, not {_toml_type(value)}"
                )
            items = value
        else:
            if not _check_type(value, kind):
                raise click.BadParameter(
                    f"{where} must be {'an' if kind == 'integer' else 'a'} {kind}, not {_toml_type(value)}"
                )
            items = [value]
        converted = []
        for item in items:
            if isinstance(param.type, click.Path) and isinstance(item, str):
                item = str(path.parent / Path(item).expanduser()) if item else item
            try:
                converted.append(param.type.convert(item, param, ctx))
            except click.BadParameter as e:
                raise click.BadParameter(f"{where}: {e.message}") from None
        assert param.name is not None
        out[param.name] = converted if param.multiple else converted[0]
    return out


def _has_password(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        return bool(urlsplit(url).password)
    except ValueError:
        return False


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array" if all(not isinstance(v, dict) for v in value) else "an array of tables"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"
