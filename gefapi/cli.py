"""`flask` commands for operators."""

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from gefapi.extensions import db
from gefapi.models import Role, User
from gefapi.services import auth_service, passwords


def register_commands(app: Flask) -> None:
    app.cli.add_command(create_admin)
    app.cli.add_command(set_password)
    app.cli.add_command(build_environment)
    app.cli.add_command(prepare_backend)
    app.cli.add_command(stop_local_runs)
    app.cli.add_command(boundaries)


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
            try:
                current_app.cli.commands["build-environment"].main([], standalone_mode=False)
            except (BackendError, docker.errors.DockerException) as exc:
                raise EnvironmentImageUnavailable(backend.name, exc) from None


class EnvironmentImageUnavailable(click.ClickException):
    """The engine answers but cannot build the environment image (typically: BASE_IMAGE cannot
    be pulled, no registry reachable). Exit code 3, which `gefapi.sh start` (gefapi.launcher)
    reads as "fall back to the local backend" when EXECUTION_BACKEND was not chosen."""

    exit_code = 3

    def __init__(self, backend: str, cause: Exception):
        config = current_app.config
        reason = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        super().__init__(
            f"the Docker engine ({backend} backend) cannot build the environment image "
            f"{config['ENVIRONMENT_IMAGE']} from BASE_IMAGE={config['BASE_IMAGE']}: {reason}. "
            "Set BASE_IMAGE to an image this engine has or can pull (docs/configuration.md), "
            "or EXECUTION_BACKEND=local to run scripts as local processes."
        )


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


@click.command("set-password")
@click.argument("email")
@click.option("--password", help="Default: generated and printed once.")
def set_password(email: str, password: str | None) -> None:
    """Give an account a new password (e.g. a lost administrator's): lifts a login lock and
    signs out its sessions."""
    from gefapi.errors import ValidationError
    from gefapi.services import user_service

    user = auth_service.find_active_user_by_email(email.lower())
    if user is None:
        raise click.ClickException(f"no active account has the email {email}")
    generated = password is None
    password = password or passwords.generate_password(20)
    try:
        user_service._set_password(user, password)
    except ValidationError as exc:
        reasons = " ".join(r for field in (exc.errors or {}).values() for r in field)
        raise click.ClickException(f"{exc}: {reasons}") from None
    db.session.commit()
    if generated:
        click.echo(f"New password for {user.email}: {password}")
        click.echo("This password is shown only once.")
    else:
        click.echo(f"Password of {user.email} changed")


boundaries = AppGroup("boundaries", help="geoBoundaries metadata behind /api/v1/data/boundaries.")


@boundaries.command("import")
@click.argument("sources", nargs=-1, required=True)
@click.option(
    "--release-type",
    type=click.Choice(["gbOpen", "gbHumanitarian", "gbAuthoritative"]),
    help="Default: read from each record's download URLs, else gbOpen.",
)
@click.option(
    "--units/--no-units",
    default=False,
    help="Also read each ADM1 record's GeoJSON for the names of its units.",
)
def import_boundaries(sources: tuple[str, ...], release_type: str | None, units: bool) -> None:
    """Import geoBoundaries' own files: metadata JSON (one record or a list, from
    https://www.geoboundaries.org/api/current/<release>/ALL/ALL/) or a country's ADM1 GeoJSON.
    Each SOURCE is a path or an http(s) URL. Importing again updates only what changed."""
    import sys

    from gefapi.errors import AppError
    from gefapi.services import boundary_service

    def track(items, label):
        items = list(items)
        with click.progressbar(items, label=label, file=sys.stderr) as bar:
            yield from bar

    for source in sources:
        try:
            document = boundary_service.read_source(source)
            report = boundary_service.import_document(
                document, release_type=release_type, fetch_units=units, track=track
            )
        except AppError as exc:
            problems = "".join(
                f"\n  {where}: {'; '.join(reasons)}"
                for where, reasons in (exc.errors or {}).items()
            )
            raise click.ClickException(f"{exc.detail}{problems}") from None
        for warning in report.warnings:
            click.echo(f"Warning: {warning}", err=True)
        click.echo(f"{source}: {report.summary()}")
