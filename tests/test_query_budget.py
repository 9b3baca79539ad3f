"""How many statements the hot requests send: a fixed number, whatever the size of the answer.
(These are the costs that docs/performance.md measured; a count, not a timing.)"""

from datetime import timedelta
from functools import partial

import pytest

from gefapi.models import Role
from gefapi.models.base import utcnow
from tests.helpers import data, sql_statements


@pytest.fixture
def running(make_user, make_script, make_execution):
    admin = make_user(Role.ADMIN)
    owner = make_user()
    script = make_script(admin, public=True)
    execution = make_execution(script, owner, status="RUNNING", params={"a": 1})
    return admin, owner, execution


def test_reading_an_execution_is_two_statements(client, app, running, auth):
    """One for the token (user row and revocation together), one for the execution."""
    _, owner, execution = running
    response, statements = sql_statements(
        app, partial(client.get, f"/api/v1/execution/{execution.id}", headers=auth(owner))
    )
    assert data(response)["id"] == str(execution.id)
    assert len(statements) == 2, [s for s, _ in statements]


@pytest.mark.parametrize("lines", [1, 100])
def test_a_log_batch_is_one_insert(client, app, running, runtime_headers, lines):
    _, _, execution = running
    batch = [{"text": f"line {i}", "level": "INFO"} for i in range(lines)]
    response, statements = sql_statements(
        app,
        partial(
            client.post,
            f"/api/v1/execution/{execution.id}/log",
            json=batch,
            headers=runtime_headers(execution),
        ),
    )
    stored = data(response)
    assert [line["text"] for line in stored] == [line["text"] for line in batch]
    assert stored == sorted(stored, key=lambda line: line["id"])
    inserts = [s for s, _ in statements if s.lstrip().startswith("INSERT")]
    assert len(inserts) == 1 and len(statements) == 3, [s for s, _ in statements]


def test_a_list_page_costs_the_same_for_2_or_100_rows(
    client, app, make_user, make_script, make_execution, auth
):
    admin = make_user(Role.ADMIN)
    script = make_script(admin, public=True)
    since = (utcnow() - timedelta(days=14)).strftime("%Y-%m-%d")
    url = (
        "/api/v1/execution/user?include=script&exclude=params,results"
        f"&updated_at={since}&page=1&per_page=100"
    )
    counts = []
    for rows in (2, 100):  # unfinished and finished: both parts of the list
        owner = make_user()
        for i in range(rows):
            finished = i % 2 == 0
            make_execution(
                script,
                owner,
                status="FINISHED" if finished else "RUNNING",
                end_date=utcnow() if finished else None,
            )
        response, statements = sql_statements(app, partial(client.get, url, headers=auth(owner)))
        assert response.get_json()["total"] == rows == len(data(response))
        counts.append(len(statements))
    assert counts[0] == counts[1] <= 6, counts
