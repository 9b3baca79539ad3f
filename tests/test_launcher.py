"""`./gefapi.sh start`'s checks before it spawns anything (gefapi.launcher), the fallback when the
engine cannot build the environment image, and the operator commands behind them. The whole
start, from a fresh clone, is tests/test_start.py."""

import os
import socket
import subprocess
from unittest import mock

import docker.errors
import pytest

from gefapi import launcher
from gefapi.executors.base import BuildFailed


def test_a_taken_port_is_named_with_the_setting_to_change():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        problem = launcher.port_problem(str(port))
    assert problem is not None
    assert f"port {port}" in problem and "PORT=" in problem
    assert launcher.port_problem(str(port)) is None  # free again once closed


@pytest.mark.parametrize("value", ["abc", "0", "70000", ""])
def test_a_port_that_is_not_a_number_is_refused(value):
    assert "is not a port number" in launcher.port_problem(value)


def test_a_second_start_on_the_same_folder_is_refused_and_told_where_the_first_is(tmp_path):
    first = launcher.lock_instance(tmp_path)
    launcher.record_address(first, "http://127.0.0.1:5999")
    try:
        with pytest.raises(launcher.AlreadyRunning) as refused:
            launcher.lock_instance(tmp_path)
        message = str(refused.value)
        assert f"pid {os.getpid()}" in message and "http://127.0.0.1:5999" in message
        assert str(tmp_path) in message and "GEFAPI_INSTANCE" in message
    finally:
        first.close()
    launcher.lock_instance(tmp_path).close()  # the lock ends with its holder


def test_every_instance_has_its_own_control_socket(tmp_path):
    assert launcher.control_socket(tmp_path) == str(tmp_path / "gunicorn.ctl")
    deep = tmp_path / ("x" * 120)
    other = tmp_path / ("y" * 120)
    assert launcher.control_socket(deep) != launcher.control_socket(other)
    assert len(launcher.control_socket(deep)) < 100  # a Unix socket path's limit


def answers(*codes):
    """subprocess.run standing in for `flask prepare-backend`, exiting with these codes."""
    calls = []

    def fake(command, **kwargs):
        calls.append(dict(kwargs["env"]))
        code = codes[len(calls) - 1]
        if kwargs.get("check") and code:
            raise subprocess.CalledProcessError(code, command)
        return subprocess.CompletedProcess(command, code)

    return fake, calls


def test_an_engine_that_cannot_build_falls_back_to_the_local_backend(monkeypatch, capsys):
    fake, calls = answers(launcher.IMAGE_UNAVAILABLE, 0)
    monkeypatch.setattr(launcher.subprocess, "run", fake)
    env = {}
    launcher.prepare_backend(env)
    assert env["EXECUTION_BACKEND"] == "local" and calls[1]["EXECUTION_BACKEND"] == "local"
    said = capsys.readouterr().out
    assert "falling back to the local backend" in said and "BASE_IMAGE" in said


@pytest.mark.parametrize("chosen", ["swarm", "docker"])
def test_a_chosen_engine_backend_that_cannot_build_stops_the_start(monkeypatch, chosen):
    fake, calls = answers(launcher.IMAGE_UNAVAILABLE)
    monkeypatch.setattr(launcher.subprocess, "run", fake)
    with pytest.raises(SystemExit) as stopped:
        launcher.prepare_backend({"EXECUTION_BACKEND": chosen})
    assert stopped.value.code == launcher.IMAGE_UNAVAILABLE and len(calls) == 1


def test_prepare_backend_says_what_to_set_when_the_base_image_cannot_be_built(app, monkeypatch):
    client = mock.Mock()
    client.images.get.side_effect = docker.errors.ImageNotFound("no such image")
    backend = mock.Mock(client=client)
    backend.name = "swarm"
    monkeypatch.setattr("gefapi.executors.get_backend", lambda: backend)
    monkeypatch.setattr("gefapi.executors.docker_client", lambda config: client)

    def unreachable(*args, **kwargs):
        raise BuildFailed('Get "https://registry-1.docker.io/v2/": no such host')

    monkeypatch.setattr("gefapi.executors.images.build_environment_image", unreachable)
    with app.app_context():  # `flask` pushes one for every command
        result = app.test_cli_runner().invoke(args=["prepare-backend"])
    assert result.exit_code == launcher.IMAGE_UNAVAILABLE
    assert "Traceback" not in result.output
    assert f"BASE_IMAGE={app.config['BASE_IMAGE']}" in result.output
    assert "EXECUTION_BACKEND=local" in result.output and "no such host" in result.output


def test_set_password_gives_a_lost_administrator_a_new_one(app, make_user, login):
    from gefapi.models import Role

    admin = make_user(role=Role.SUPERADMIN, email="lost@example.org")

    def invoke(*args):
        with app.app_context():  # `flask` pushes one for every command
            return app.test_cli_runner().invoke(args=["set-password", *args])

    result = invoke("LOST@example.org", "--password", "new and long")
    assert result.exit_code == 0, result.output
    assert login(admin, "new and long")["access_token"]

    result = invoke("lost@example.org")
    generated = result.output.split("lost@example.org: ")[1].split()[0]
    assert login(admin, generated)["access_token"]

    assert "no active account" in invoke("nobody@x.org").output
    weak = invoke("lost@example.org", "--password", "short")
    assert weak.exit_code == 1 and "at least" in weak.output
