"""Every script and execution answer loads the way the QGIS plugin loads it (CONTRACT 5, 6;
reference/clients-2026.md section 2).

The plugin loads each object with te_schemas (`RemoteScript`, `Job`, and their `ScriptStatus` and
`JobStatus` enums); one item it refuses fails the plugin's whole list. The schemas below are
written here to te_schemas' constraints (field types, required fields, `null` allowed or not,
the enums' values, unknown keys excluded); te_schemas itself is not a dependency of gefapi.
"""

import enum
import uuid
from datetime import timedelta

import pytest
from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load

from gefapi.models import ExecutionStatus, Role, ScriptStatus
from gefapi.models.base import utcnow
from tests.archives import script_archive, upload
from tests.helpers import data

# te_schemas' constraints -------------------------------------------------------------------


class TeScriptStatus(enum.Enum):  # te_schemas.jobs.ScriptStatus
    SUCCESS = "SUCCESS"
    FAIL = "FAIL"
    BUILDING = "BUILDING"


class TeJobStatus(enum.Enum):  # te_schemas.jobs.JobStatus (client-only values included)
    READY = "READY"
    PENDING = "PENDING"
    FINISHED = "FINISHED"
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    FAILED = "FAILED"
    DELETED = "DELETED"
    DOWNLOADED = "DOWNLOADED"
    GENERATED_LOCALLY = "GENERATED_LOCALLY"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


def optional(field: fields.Field) -> fields.Field:
    """An Optional[...] dataclass field: may be absent or null."""
    field.allow_none, field.required = True, False
    return field


class RemoteScriptSchema(Schema):
    """RemoteScript: every field but the four resources is required and never null."""

    class Meta:
        unknown = EXCLUDE

    id = fields.UUID(required=True)
    name = fields.String(required=True)
    slug = fields.String(required=True)
    description = fields.String(required=True)
    status = fields.Enum(TeScriptStatus, by_value=True, required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    user_id = fields.UUID(required=True)
    public = fields.Boolean(required=True)
    cpu_reservation = optional(fields.Integer())
    cpu_limit = optional(fields.Integer())
    memory_reservation = optional(fields.Integer())
    memory_limit = optional(fields.Integer())


class ExecutionScriptSchema(Schema):
    """ExecutionScript (an execution's `script`): everything optional, unknown keys excluded."""

    class Meta:
        unknown = EXCLUDE

    id = fields.String(required=True)  # Union[UUID, str]
    name = optional(fields.String())
    slug = optional(fields.String())
    version = optional(fields.String())
    description = optional(fields.String())
    name_readable = optional(fields.String())


class LocalContextSchema(Schema):
    base_dir = optional(fields.String())
    area_of_interest_name = optional(fields.String())
    owner_pid = optional(fields.Integer())


class JobSchema(Schema):
    """Job: `params` must be an object (the pre-load reads it), progress a number, start_date a
    date, status one of JobStatus; end_date may be null."""

    class Meta:
        unknown = EXCLUDE

    id = fields.UUID(required=True)
    params = fields.Dict(required=True)
    progress = fields.Integer(required=True)
    start_date = fields.DateTime(required=True)
    status = fields.Enum(TeJobStatus, by_value=True, required=True)
    local_context = optional(fields.Nested(LocalContextSchema))
    results = optional(fields.Raw())
    task_name = optional(fields.String())
    task_notes = optional(fields.String())
    script = optional(fields.Nested(ExecutionScriptSchema))
    end_date = optional(fields.DateTime())
    user_id = optional(fields.UUID())

    @pre_load
    def _as_te_schemas_does(self, data, **kwargs):
        data = dict(data)
        script_id = data.pop("script_id", None)
        if not data.get("script"):
            data["script"] = {"id": str(script_id), "name": str(script_id)}
        for name in ("task_name", "task_notes", "local_context"):  # params[name] is read
            value = data["params"].pop(name, None)
            if not data.get(name) and value:
                data[name] = value
        return data


def load_scripts(items: list[dict]) -> None:
    for item in items:
        RemoteScriptSchema().load(item)


def load_jobs(items: list[dict], *, filled: bool = False) -> None:
    """`filled`: the answer excluded params and results, which the plugin fills in (clients.md
    A.2 #11) before loading."""
    for item in items:
        item = {**item, "params": {}, "results": None} if filled else item
        JobSchema().load({**item, "params": dict(item["params"])})


def test_the_schemas_refuse_what_te_schemas_refuses():
    """The control: a null description, an unknown script or job status, a null params."""
    script = {
        "id": str(uuid.uuid4()),
        "name": "n",
        "slug": "n",
        "description": "",
        "status": "SUCCESS",
        "created_at": "2022-12-05T12:42:27.164465",
        "updated_at": "2022-12-05T12:42:27.164465",
        "user_id": str(uuid.uuid4()),
        "public": False,
        "cpu_reservation": 1e8,
        "cpu_limit": 5e8,
        "memory_reservation": 1,
        "memory_limit": 2,
    }
    RemoteScriptSchema().load(script)
    for change in ({"description": None}, {"status": "PENDING"}, {"status": "QUEUED"}):
        with pytest.raises(ValidationError):
            RemoteScriptSchema().load({**script, **change})
    job = {
        "id": str(uuid.uuid4()),
        "script_id": str(uuid.uuid4()),
        "params": {},
        "progress": 0,
        "start_date": "2022-12-05T12:42:27.164465",
        "status": "PENDING",
    }
    JobSchema().load(job)
    for change in ({"status": "SUCCESS"}, {"progress": None}, {"start_date": None}):
        with pytest.raises(ValidationError):
            JobSchema().load({**job, **change})
    with pytest.raises((ValidationError, AttributeError, TypeError)):
        JobSchema().load({**job, "params": None})


# Scripts -----------------------------------------------------------------------------------

SCRIPT_INCLUDES = [
    "",
    "user",
    "logs",
    "executions",
    "environment",
    "access",
    "user,logs,executions,environment,access",
    "user_name,user_email,access_control,environment",  # the admin UI's (unknown ones ignored)
]


@pytest.fixture
def scripts(client, make_user, make_script, make_execution, auth, storage_root):
    """A script of every status an answer can show, none with a description: one published
    through the API (BUILDING from then on), built ones, a failed one, and a row an older
    release stored as PENDING."""
    admin, user = make_user(Role.ADMIN), make_user()
    published = data(
        client.post(
            "/api/v1/script",
            data=upload(script_archive({"name": "no description 1_0_0"})),
            headers=auth(admin),
            content_type="multipart/form-data",
        )
    )
    RemoteScriptSchema().load(published)
    assert (published["status"], published["description"]) == ("BUILDING", "")
    made = [
        make_script(admin, public=True, status=ScriptStatus.SUCCESS),
        make_script(admin, public=True, status=ScriptStatus.FAIL, build_error="pip failed"),
        make_script(admin, public=True, status=ScriptStatus.PENDING),
        make_script(admin, public=True, status=ScriptStatus.BUILDING, description="Described"),
    ]
    make_execution(made[0], user, status=ExecutionStatus.RUNNING)
    return admin, user, [published["id"], *[str(script.id) for script in made]]


@pytest.mark.parametrize("include", SCRIPT_INCLUDES)
def test_every_script_answer_loads_as_a_remote_script(client, auth, scripts, include):
    admin, user, ids = scripts
    for caller in (admin, user):
        headers = auth(caller)
        for query in ({}, {"page": 1, "per_page": 2}, {"page": 3, "per_page": 2}):
            listed = data(
                client.get(
                    "/api/v1/script", query_string={**query, "include": include}, headers=headers
                )
            )
            load_scripts(listed)
            for script in listed:
                load_jobs(script.get("executions", []), filled=True)
        for script_id in ids:
            response = client.get(
                f"/api/v1/script/{script_id}", query_string={"include": include}, headers=headers
            )
            if caller is user and response.status_code == 404:
                continue  # the published one is private
            load_scripts([data(response)])
    statuses = {s["status"] for s in data(client.get("/api/v1/script", headers=auth(admin)))}
    assert statuses == {"BUILDING", "SUCCESS", "FAIL"}
    building = data(client.get("/api/v1/script?status=BUILDING", headers=auth(admin)))
    assert len(building) == 3  # the published one, the stored PENDING one, the BUILDING one


def test_script_changes_answer_remote_scripts(client, auth, scripts):
    admin, _, ids = scripts
    headers = auth(admin)
    for action in ("publish", "unpublish"):
        load_scripts([data(client.post(f"/api/v1/script/{ids[0]}/{action}", headers=headers))])
    republished = data(
        client.patch(
            f"/api/v1/script/{ids[1]}",
            data=upload(script_archive({"name": "republished 1_0_1"})),
            headers=headers,
            content_type="multipart/form-data",
        )
    )
    load_scripts([republished])
    assert republished["status"] == "BUILDING"
    access = {"allowed_roles": ["USER"]}
    load_scripts(
        [data(client.put(f"/api/v1/script/{ids[2]}/access", json=access, headers=headers))]
    )
    load_scripts([data(client.delete(f"/api/v1/script/{ids[3]}", headers=headers))])


def test_no_answer_shows_where_a_script_was_built(client, auth, scripts):
    admin, _, ids = scripts
    for path in (
        "/api/v1/script?include=user,logs,environment,access,image",
        f"/api/v1/script/{ids[1]}?include=image",
    ):
        text = client.get(path, headers=auth(admin)).get_data(as_text=True)
        assert "gefapi/test:" not in text and '"image"' not in text and "archive_key" not in text


# Executions --------------------------------------------------------------------------------

EXECUTION_INCLUDES = [
    "",
    "script",
    "user",
    "logs",
    "duration",
    "script_name,user_id,duration,user_name,user_email",
    "script,user,logs,duration,script_name,user_name,user_email",
]


@pytest.fixture
def executions(make_user, make_script, make_execution):
    """One execution of every status, on a script without a description (and one whose stored
    status is an older release's PENDING), with the plugin's params."""
    admin, user = make_user(Role.ADMIN), make_user()
    built = make_script(admin, public=True, name="productivity 2_3_2")
    queued = make_script(admin, public=True, status=ScriptStatus.PENDING)
    params = {
        "year": 2020,
        "task_name": "Kenya",
        "task_notes": "",
        "local_context": {"base_dir": "C:/x", "area_of_interest_name": "Kenya"},
    }
    now = utcnow()
    results = {"type": "JsonResults", "name": "r", "data": {"a": 1}}
    made = []
    for status in ExecutionStatus:
        ended = status in (
            ExecutionStatus.FINISHED,
            ExecutionStatus.FAILED,
            ExecutionStatus.CANCELLED,
        )
        made.append(
            make_execution(
                built,
                user,
                status=status,
                params=params,
                results=results if status == ExecutionStatus.FINISHED else None,
                progress=100 if status == ExecutionStatus.FINISHED else 40,
                end_date=now if ended else None,
                start_date=now - timedelta(minutes=5),
            )
        )
    made.append(make_execution(queued, user, status=ExecutionStatus.PENDING, params={}))
    return admin, user, built, made


@pytest.mark.parametrize("include", EXECUTION_INCLUDES)
def test_every_execution_answer_loads_as_a_job(client, auth, executions, include):
    admin, user, _, made = executions
    for caller, path in (
        (user, "/api/v1/execution/user"),
        (user, "/api/v1/execution"),
        (admin, "/api/v1/execution"),
    ):
        headers = auth(caller)
        for query in (
            {},
            {"page": 1, "per_page": 3},
            {"page": 2, "per_page": 3},
            {"updated_at": (utcnow() - timedelta(days=14)).date().isoformat()},
        ):
            listed = data(
                client.get(path, query_string={**query, "include": include}, headers=headers)
            )
            load_jobs(listed)
            plugin = {**query, "include": include, "exclude": "params,results"}
            load_jobs(data(client.get(path, query_string=plugin, headers=headers)), filled=True)
        statuses = {job["status"] for job in data(client.get(path, headers=headers))}
        assert statuses == {status.value for status in ExecutionStatus}
    for execution in made:
        for query in ({"include": include}, {"include": include, "exclude": "params"}):
            answer = data(
                client.get(
                    f"/api/v1/execution/{execution.id}", query_string=query, headers=auth(user)
                )
            )
            load_jobs([answer if "params" in answer else {**answer, "params": {}}])
            if "script" in answer:
                assert answer["script"]["description"] == ""
                assert answer["script"]["status"] in {s.value for s in TeScriptStatus}


def test_execution_changes_answer_jobs(client, auth, executions, runtime_headers):
    _, user, built, made = executions
    run = data(
        client.post(
            f"/api/v1/script/{built.id}/run", json={"task_name": "t", "year": 1}, headers=auth(user)
        )
    )
    load_jobs([run])
    assert run["status"] == "PENDING"
    running = next(e for e in made if e.status == ExecutionStatus.RUNNING)
    patched = data(
        client.patch(
            f"/api/v1/execution/{running.id}",
            json={"progress": 42.5},
            headers=runtime_headers(running),
        )
    )
    load_jobs([patched])
    cancelled = client.post(f"/api/v1/execution/{running.id}/cancel", headers=auth(user))
    assert cancelled.status_code in (200, 202)
    answer = cancelled.get_json()["data"]
    load_jobs([answer, answer["execution"]])
    finished = next(e for e in made if e.status == ExecutionStatus.FINISHED)
    load_jobs([data(client.delete(f"/api/v1/execution/{finished.id}", headers=auth(user)))])
