"""schemathesis against /swagger.json: no generated request gets a 500, and every documented
response matches the document."""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from gefapi.models import Role

pytestmark = pytest.mark.slow
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))


def test_api_never_fails_with_500(app, make_user, auth):
    """Every example runs as a fresh SUPERADMIN (examples log out and delete accounts)."""
    schema = schemathesis.openapi.from_wsgi("/swagger.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            case.call_and_validate(
                headers=auth(make_user(Role.SUPERADMIN)),
                checks=[not_a_server_error, response_schema_conformance],
            )

        check()
