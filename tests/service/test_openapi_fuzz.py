"""The whole OpenAPI document, fuzzed with schemathesis: no input gives a server error.

Issue 12 item 10: deeply nested JSON, integers of thousands of digits and huge query numbers
were HTTP 500s. Every operation of the service's OpenAPI document is called in-process (ASGI)
with schema-conforming and schema-violating requests (a bounded number of each, derandomized:
the same requests on every run), with the admin credential so that admin operations get past
authentication; every answer must be below 500.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from veritee.domain import Domain
from veritee.service.app import create_app
from veritee.service.settings import Settings

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.generation import GenerationMode  # noqa: E402

EXAMPLES = 8  # per operation and mode: enough to reach every parameter's bounds, seconds in all


def _server_errors(schema: Any, admin: dict[str, str], mode: GenerationMode) -> list[str]:
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case: Any) -> None:
            response = case.call(headers=dict(admin))
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {response.status_code} "
                                f"query={case.query!r} body={str(case.body)[:200]!r} -> {response.text[:300]}")  # fmt: skip

        try:
            call()
        except (
            Unsatisfiable
        ):  # negative mode: an operation without parameters has nothing to violate
            assert mode is GenerationMode.NEGATIVE and not operation.body and not operation.query
    return failures


@pytest.fixture
def api(tmp_path: Path) -> tuple[Any, dict[str, str]]:
    domain = Domain.create(tmp_path / "domain", name="test", now=dt.datetime.now(dt.UTC))
    app = create_app(Settings(data_dir=domain.path, policy_cache_seconds=0))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return schema, {"Authorization": f"Bearer {domain.admin_token()}"}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_operation_answers_a_server_error(
    api: tuple[Any, dict[str, str]], mode: GenerationMode
) -> None:
    schema, admin = api
    failures = _server_errors(schema, admin, mode)
    assert not failures, "\n".join(failures)


def test_the_document_lists_the_operations_fuzzed(api: tuple[Any, dict[str, str]]) -> None:
    schema, _ = api
    paths = {r.ok().path for r in schema.get_all_operations()}
    assert {"/v1/attest", "/v1/admin/policy", "/v1/admin/audit", "/kbs/v0/auth"} <= paths
