"""`flask` commands for operators."""

import click
from flask import Flask, current_app

from gefapi.extensions import db
from gefapi.models import Role, User
from gefapi.services import auth_service, passwords


def register_commands(app: Flask) -> None:
    app.cli.add_command(create_admin)
    app.cli.add_command(build_environment)
    app.cli.add_command(prepare_backend)
    app.cli.add_command(stop_local_runs)


@click.command("prepare-backend")
def prepare_backend() -> None:
    """Say which execution backend runs executions; build the environment image if it needs one."""
    from gefapi.executors import get_backend
    from gefapi.executors.base import BackendError

    try:
        backend = get_backend()
    except BackendError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Execution backend: {backend.name}")
    if backend.name == "local":
        click.echo(backend.describe_isolation())
    if backend.name in ("swarm", "docker"):
        import docker.errors

        try:
            backend.client.images.get(current_app.config["ENVIRONMENT_IMAGE"])
        except docker.errors.ImageNotFound:
            current_app.cli.commands["build-environment"].main([], standalone_mode=False)


@click.command("stop-local-runs")
def stop_local_runs() -> None:
    """Kill the local backend's running executions; the reconciler then ends them FAILED as
    interrupted by a server shutdown. (`gefapi.sh start` lets them run on instead.)"""
    from gefapi.executors import get_backend

    backend = get_backend()
    if backend.name == "local":
        backend.stop_all()


@click.command("build-environment")
def build_environment() -> None:
    """Build ENVIRONMENT_IMAGE (FROM BASE_IMAGE) that script images build on."""
    from gefapi.executors import docker_client
    from gefapi.executors.images import build_environment_image

    config = current_app.config
    build_environment_image(
        docker_client(config),
        tag=config["ENVIRONMENT_IMAGE"],
        base_image=config["BASE_IMAGE"],
        ca_bundle=config["BUILD_CA_BUNDLE"],
        network=config["BUILD_NETWORK"],
        on_line=click.echo,
    )
    click.echo(f"Built {config['ENVIRONMENT_IMAGE']} from {config['BASE_IMAGE']}")


@click.command("create-admin")
@click.option("--email", envvar="ADMIN_EMAIL", help="Defaults to ADMIN_EMAIL.")
@click.option("--password", envvar="ADMIN_PASSWORD", help="Defaults to ADMIN_PASSWORD.")
def create_admin(email: str | None, password: str | None) -> None:
    """Create the first SUPERADMIN unless one exists; prints generated credentials once."""
    if db.session.query(User.id).filter(User.role == Role.SUPERADMIN, ~User.deleted).first():
        click.echo("An administrator already exists; nothing to do.")
        return
    email = (email or "admin@gefapi.local").lower()
    generated = password is None
    password = password or passwords.generate_password(20)
    if auth_service.find_active_user_by_email(email):
        raise click.ClickException(f"{email} already has an account")
    admin = User(
        email=email,
        name="Administrator",
        role=Role.SUPERADMIN,
        password_hash=passwords.hash_password(password),
    )
    db.session.add(admin)
    db.session.commit()
    if generated:
        click.echo(f"Created administrator {email} with password: {password}")
        click.echo("This password is shown only once.")
    else:
        click.echo(f"Created administrator {email}")
    current_app.logger.info("Created administrator %s", email)
