"""`veritee serve --config FILE`: every flag has a key, flags win, bad files are usage errors.

Parsed with click as the command runs it (make_context runs --config's callback and resolves
every flag) without starting the service."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from veritee.cli.main import _register, cli
from veritee.cli.serve import serve_cmd
from veritee.cli.serve_config import MAX_CONFIG_BYTES, config_keys

_register()
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "deploy" / "veritee.toml"


def _params(*args: str) -> dict[str, Any]:
    ctx = serve_cmd.make_context("serve", list(args))
    return dict(ctx.params)


def _refused(path: Path, *more: str) -> str:
    r = CliRunner().invoke(cli, ["serve", "--config", str(path), *more])
    assert r.exit_code == 2, r.output
    return r.output


def test_the_example_file_sets_what_it_says() -> None:
    p = _params("--config", str(EXAMPLE))
    assert p["data"] == Path("/var/lib/veritee")
    assert (p["host"], p["port"], p["tls"], p["workers"]) == ("0.0.0.0", 8400, True, 2)
    assert (p["log_level"], p["access_log"], p["trusted_proxies"]) == ("warning", True, ())
    assert p["db"] is None and p["accept_attester_collateral"] is False


def test_every_flag_has_a_key_of_its_type(tmp_path: Path) -> None:
    keys = config_keys(serve_cmd)
    flags = {o[2:] for p in serve_cmd.params for o in p.opts if o.startswith("--")} - {
        "config",
        "help",
    }
    assert set(keys) == flags
    # A value of each key's type, differing from its default; the file sets each one.
    samples: dict[str, tuple[str, Any]] = {}
    for key, param in keys.items():
        if param.multiple:
            samples[key] = ('["10.1.2.0/24", "192.0.2.7"]', ("10.1.2.0/24", "192.0.2.7"))
        elif param.is_flag:
            samples[key] = ("true" if not param.default else "false", not param.default)
        elif isinstance(param.type, click.types.IntParamType):
            samples[key] = ("3", 3)
        elif isinstance(param.type, click.Choice):
            value = next(c for c in param.type.choices if c != param.default)
            samples[key] = (f'"{value}"', value)
        elif isinstance(param.type, click.Path):
            samples[key] = ('"rel/domain"', tmp_path / "rel" / "domain")  # relative to the file
        else:
            samples[key] = ('"text-value"', "text-value")
    cfg = tmp_path / "all.toml"
    cfg.write_text("".join(f"{k} = {v}\n" for k, (v, _) in samples.items()))
    p = _params("--config", str(cfg))
    for key, (_, expected) in samples.items():
        got = p[keys[key].name or ""]
        assert got == expected or (isinstance(got, tuple) and list(got) == list(expected)), key


def test_flags_given_win_over_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "v.toml"
    cfg.write_text('port = 9000\ntls = true\ntrusted-proxy = ["10.0.0.0/8"]\nworkers = 4\n'
                   'data = "/srv/a"\n')  # fmt: skip
    p = _params("--port", "9001", "--no-tls", "--trusted-proxy", "192.0.2.1",
                "--data", str(tmp_path), "--config", str(cfg))  # fmt: skip
    assert (p["port"], p["tls"], p["trusted_proxies"], p["data"]) == (
        9001,
        False,
        ("192.0.2.1",),
        tmp_path,
    )
    assert p["workers"] == 4  # not given: the file's
    assert _params()["port"] == 8400  # no file: the defaults


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 8400\n", "unknown key 'prot'"),
        ("config = 'other.toml'\n", "unknown key 'config'"),
        ("[serve]\nport = 1\n", "unknown key 'serve'"),
        ('port = "8400"\n', "port must be an integer, not a string"),
        ("port = 8400.0\n", "not a float"),
        ("port = 70000\n", "70000 is not in the range 0<=x<=65535"),
        ("workers = 0\n", "workers"),
        ("workers = true\n", "not a boolean"),
        ('tls = "yes"\n', "tls must be a boolean"),
        ("tls = 1\n", "tls must be a boolean, not an integer"),
        ('trusted-proxy = "10.0.0.1"\n', "must be an array of strings"),
        ("trusted-proxy = [1]\n", "must be an array of strings"),
        ('log-level = "loud"\n', "log-level"),
        ("data = 5\n", "data must be a string"),
        ("host = 1979-05-27\n", "not a date or time"),
        ("port = 8400\nport = 8401\n", "not valid TOML"),
        ('host = "127.0.0.1\n', "not valid TOML"),  # truncated: the string never ends
        ('host = "a\x00b"\n', "not valid TOML"),
    ],
)
def test_bad_files_are_usage_errors(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = _refused(cfg)
    assert message in out and str(cfg) in out


def test_not_utf8_oversized_missing_or_not_a_file(tmp_path: Path) -> None:
    cfg = tmp_path / "latin1.toml"
    cfg.write_bytes('host = "h\xf4te"\n'.encode("latin-1"))
    assert "not UTF-8" in _refused(cfg)
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    assert f"at most {MAX_CONFIG_BYTES}" in _refused(big)
    assert "No such file" in _refused(tmp_path / "absent.toml")
    assert "is a directory" in _refused(tmp_path)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    assert "not a regular file" in _refused(fifo)


def test_a_tampered_example_is_refused(tmp_path: Path) -> None:
    good = EXAMPLE.read_bytes()
    cases = {
        "key renamed": good.replace(b"\nport = 8400", b"\nport_ = 8400"),
        "quote dropped": good.replace(b'log-level = "warning"', b'log-level = "warning'),
        "type changed": good.replace(b"workers = 2", b'workers = "2"'),
        "truncated": good[: good.index(b"trusted-proxy = [") + len(b"trusted-proxy = [")],
        "value widened": good.replace(b"workers = 2", b"workers = 200"),
    }
    for name, data in cases.items():
        assert data != good, name
        cfg = tmp_path / f"{name}.toml"
        cfg.write_bytes(data)
        assert "error" in _refused(cfg).lower(), name


def test_a_readable_file_with_a_database_password_is_warned_about(tmp_path: Path) -> None:
    cfg = tmp_path / "pw.toml"
    cfg.write_text('db = "postgresql+psycopg://veritee:hunter2@db:5432/v"\nport = 70000\n')
    os.chmod(cfg, 0o644)
    out = _refused(cfg)  # the range error still stops it; the warning came first
    assert "holds a database password" in out and "70000" in out and "hunter2" not in out
    os.chmod(cfg, 0o600)
    assert "holds a database password" not in _refused(cfg)
