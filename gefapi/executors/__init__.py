"""Choosing and building the execution backend from the configuration."""

from flask import current_app

from gefapi import archives
from gefapi.executors.base import ExecutionBackend

BACKENDS = ("swarm", "docker", "local")


def docker_client(config):
    import docker

    return docker.DockerClient(
        base_url=config.get("DOCKER_HOST") or "unix://var/run/docker.sock",
        version="auto",
        timeout=config["DOCKER_TIMEOUT_SECONDS"],
    )


def detect_backend(config) -> str:
    """swarm if an engine in swarm mode answers, docker if an engine answers, local otherwise."""
    try:
        info = docker_client(config).info()
    except Exception:
        return "local"
    return "swarm" if info.get("Swarm", {}).get("LocalNodeState") == "active" else "docker"


def build_backend(config) -> ExecutionBackend:
    name = config["EXECUTION_BACKEND"]
    if name == "auto":
        name = detect_backend(config)
    limits = archives.Limits(
        max_unpacked_bytes=config["SCRIPT_MAX_UNPACKED_BYTES"],
        max_members=config["SCRIPT_MAX_MEMBERS"],
        max_member_bytes=config["SCRIPT_MAX_UNPACKED_BYTES"],
    )
    if name in ("swarm", "docker"):
        from gefapi.executors.docker import DockerBackend
        from gefapi.executors.images import ImageBuilder
        from gefapi.executors.swarm import SwarmBackend

        client = docker_client(config)
        builder = ImageBuilder(
            client,
            archive_limits=limits,
            ca_bundle=config["BUILD_CA_BUNDLE"],
            network=config["BUILD_NETWORK"],
            registry=config["REGISTRY_URL"],
        )
        backend_class = SwarmBackend if name == "swarm" else DockerBackend
        return backend_class(client, builder, network=config["EXECUTION_NETWORK"])
    if name == "local":
        from gefapi.executors.local import LocalBackend

        return LocalBackend.from_config(config, limits)
    raise ValueError(f"Unknown EXECUTION_BACKEND {name!r}; use one of auto, {', '.join(BACKENDS)}")


def get_backend() -> ExecutionBackend:
    """Built on first use (never at import or app creation: the API does not talk to engines)."""
    if "executor" not in current_app.extensions:
        current_app.extensions["executor"] = build_backend(current_app.config)
    return current_app.extensions["executor"]
