"""Script images for the Docker backends: a generated build context FROM the environment image."""

import os
import shutil
import tempfile
from collections.abc import Callable

import docker.errors

from gefapi import archives
from gefapi.executors.base import BackendUnavailable, BuildFailed, BuildResult, BuildSpec

CA_FILE = "extra-ca.crt"


SCRIPT_DIR = "/project/script"
LEGACY_SCRIPT_DIR = "/project/gefcore/script"  # where gefcore imports gefcore.script.main


def dockerfile(with_ca: bool, legacy: bool = False) -> str:
    lines = ["ARG ENVIRONMENT_IMAGE", "FROM ${ENVIRONMENT_IMAGE}"]
    if with_ca:
        lines += [
            f"COPY {CA_FILE} /usr/local/share/gefapi-extra-ca.crt",
            "ENV PIP_CERT=/usr/local/share/gefapi-extra-ca.crt"
            " REQUESTS_CA_BUNDLE=/usr/local/share/gefapi-extra-ca.crt",
        ]
    lines += [
        "COPY requirements.txt /project/requirements.txt",
        "RUN pip install --no-cache-dir -r /project/requirements.txt",
        f"COPY src {LEGACY_SCRIPT_DIR if legacy else SCRIPT_DIR}",
    ]
    return "\n".join(lines) + "\n"


def docker_build(client, on_line: Callable[[str], None], **options) -> str | None:
    """`docker build` with its output streamed line by line; the built image's id."""
    image_id = None
    for chunk in client.api.build(rm=True, forcerm=True, decode=True, **options):
        if "error" in chunk:
            raise BuildFailed(chunk["error"].strip())
        for line in chunk.get("stream", "").splitlines():
            if line.strip():
                on_line(line.rstrip())
        image_id = chunk.get("aux", {}).get("ID", image_id)
    return image_id


class ImageBuilder:
    """`docker build` of a script archive, streaming output lines; optional registry push."""

    def __init__(
        self,
        client,
        *,
        archive_limits: archives.Limits,
        ca_bundle: str | None = None,
        network: str | None = None,
        registry: str | None = None,
    ):
        self.client = client
        self.limits = archive_limits
        self.ca_bundle = ca_bundle
        self.network = network
        self.registry = registry

    def build(self, spec: BuildSpec, on_line: Callable[[str], None]) -> BuildResult:
        on_line(f"Base image: {self._describe(spec.environment_image)}")
        context = tempfile.mkdtemp(prefix="gefapi-build-")
        try:
            self._prepare_context(spec, context)
            image_id = self._docker_build(spec, context, on_line)
        finally:
            shutil.rmtree(context, ignore_errors=True)
        if self.registry:
            return BuildResult(image=spec.image, digest=self._push(spec.image, on_line))
        return BuildResult(image=spec.image, digest=image_id)

    def _describe(self, image: str) -> str:
        """The base image's name and, when the engine has it, its digest (else its id)."""
        try:
            attrs = self.client.images.get(image).attrs
        except docker.errors.DockerException:
            return f"{image} (not on this engine yet: the build pulls it)"
        digests = attrs.get("RepoDigests") or []
        return f"{image} ({digests[0].rpartition('@')[2] if digests else attrs['Id']})"

    def _prepare_context(self, spec: BuildSpec, context: str) -> None:
        with open(spec.archive_path, "rb") as archive:
            archives.extract(archive, context, self.limits)
        with open(os.path.join(context, "Dockerfile"), "w") as file:
            file.write(dockerfile(bool(self.ca_bundle), spec.legacy))
        if self.ca_bundle:
            shutil.copyfile(self.ca_bundle, os.path.join(context, CA_FILE))

    def _docker_build(self, spec: BuildSpec, context: str, on_line) -> str | None:
        try:
            return docker_build(
                self.client,
                on_line,
                path=context,
                tag=spec.image,
                pull=False,
                buildargs={"ENVIRONMENT_IMAGE": spec.environment_image},
                network_mode=self.network,
                labels=spec.labels,
            )
        except docker.errors.APIError as exc:
            raise BuildFailed(str(exc.explanation or exc)) from None
        except docker.errors.DockerException as exc:
            raise BackendUnavailable(str(exc)) from None

    def _push(self, image: str, on_line) -> str | None:
        repository, _, tag = image.rpartition(":")
        digest = None
        for chunk in self.client.images.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise BuildFailed(f"Push failed: {chunk['error']}")
            digest = chunk.get("aux", {}).get("Digest", digest)
        on_line(f"Pushed {image} ({digest})")
        return digest


def build_environment_image(
    client,
    *,
    tag: str,
    base_image: str,
    ca_bundle: str | None,
    network: str | None,
    on_line: Callable[[str], None],
) -> None:
    """The base of every script image: environment/Dockerfile plus the runtime."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    context = tempfile.mkdtemp(prefix="gefapi-environment-")
    try:
        shutil.copy(os.path.join(root, "environment", "Dockerfile"), context)
        shutil.copy(os.path.join(root, "gefapi", "runner", "runtime.py"), context)
        os.mkdir(os.path.join(context, "ca"))
        if ca_bundle:
            shutil.copyfile(ca_bundle, os.path.join(context, "ca", "extra.crt"))
        docker_build(
            client,
            on_line,
            path=context,
            tag=tag,
            network_mode=network,
            buildargs={"BASE_IMAGE": base_image},
        )
    finally:
        shutil.rmtree(context, ignore_errors=True)
