"""Artifacts: upload (the runtime), list and read (owner), signed downloads (anyone with the
link), storage usage (ADMIN) and a script's retention."""

import re
import secrets
import uuid

from flask import Response, redirect, request
from flask.views import MethodView
from flask_jwt_extended import current_user, get_jwt
from werkzeug.http import quote_etag, unquote_etag

from gefapi.auth import EXECUTION_SCOPE, login_required
from gefapi.errors import UnsupportedMediaType, error_response
from gefapi.routes import RAW_BODY_ENDPOINTS, Blueprint
from gefapi.schemas.artifact import (
    ArtifactSchema,
    DownloadArgs,
    PolicySchema,
    PolicyUpdateSchema,
    UploadArgs,
    UsageArgs,
    UsageSchema,
)
from gefapi.schemas.common import envelope
from gefapi.services import artifact_service
from gefapi.services.execution_service import Caller

blp = Blueprint("artifacts", __name__, url_prefix="/api/v1", description="Artifacts")

ARTIFACT, ARTIFACTS = ArtifactSchema(), ArtifactSchema(many=True)
READ_BYTES = 1024 * 1024
MAX_RANGES = 16

BINARY_BODY = {
    "required": True,
    "description": "The file's bytes as the raw body (not multipart). Send "
    "`Content-Type: application/octet-stream` and the media type as `?media_type=`; a "
    "chunked body is capped at MAX_CONTENT_LENGTH, one with a Content-Length at "
    "ARTIFACT_MAX_BYTES. Empty bodies are refused (400).",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


def caller() -> Caller:
    claims = get_jwt()
    if claims.get("scope") == EXECUTION_SCOPE:
        return Caller(current_user, runtime_execution_id=uuid.UUID(claims["execution_id"]))
    return Caller(current_user)


@blp.route("/execution/<uuid:execution_id>/artifacts")
class Artifacts(MethodView):
    @login_required(allow_execution_token=True)
    @blp.documents(ArtifactSchema, many=True)
    def get(self, execution_id):
        """The execution's artifacts, each with a fresh signed download URL"""
        artifacts = artifact_service.list_for(execution_id, caller=caller())
        return envelope(ARTIFACTS.dump(artifacts))


@blp.route("/execution/<uuid:execution_id>/artifacts/<path:name>", methods=["PUT"])
class ArtifactUpload(MethodView):
    @login_required(allow_execution_token=True)
    @blp.arguments(UploadArgs, location="query")
    @blp.doc(
        requestBody=BINARY_BODY,
        responses={"409": {"$ref": "#/components/responses/Conflict"}},
    )
    @blp.documents(ArtifactSchema)
    def put(self, args, execution_id, name):
        """Upload a file the execution produced (its runtime, or ADMIN); the answer's `uri`
        goes into the results as it is. The name is sanitized; the same name replaces."""
        if request.mimetype.startswith("multipart/"):
            raise UnsupportedMediaType("Send the file's bytes as the raw body, not multipart")
        # The service applies the artifact caps with a clear message before reading a byte.
        request.max_content_length = None
        artifact = artifact_service.upload(
            execution_id,
            name=name,
            stream=request.stream,
            length=request.content_length,
            media_type=args.get("media_type"),
            caller=caller(),
        )
        return envelope(ARTIFACT.dump(artifact))


@blp.route("/execution/<uuid:execution_id>/artifacts/<name>", methods=["GET", "DELETE"])
class ArtifactByName(MethodView):
    @login_required(allow_execution_token=True)
    @blp.documents(ArtifactSchema)
    def get(self, execution_id, name):
        """One artifact's metadata and signed download URL"""
        return envelope(ARTIFACT.dump(artifact_service.get(execution_id, name, caller=caller())))

    @login_required
    @blp.documents(ArtifactSchema)
    def delete(self, execution_id, name):
        """Delete one artifact (owner or ADMIN); its links stop working"""
        return envelope(ARTIFACT.dump(artifact_service.remove(execution_id, name, caller=caller())))


@blp.route("/artifact/<uuid:artifact_id>/<name>")
class Download(MethodView):
    @blp.arguments(DownloadArgs, location="query")
    @blp.alt_response(
        200, content_type="application/octet-stream", success=True, description="The file"
    )
    @blp.alt_response(206, content_type="application/octet-stream", description="Range(s)")
    @blp.alt_response(307, description="S3 storage: a presigned URL that answers the same")
    @blp.alt_response(416, description="No requested range is within the file")
    @blp.alt_response(403, response="FORBIDDEN")  # a bad or expired signature
    def get(self, args, artifact_id, name):
        """Download through a signed link, without a token (HEAD for the size; `Range`;
        `ETag` is the MD5). 403 for a bad or expired signature, 404 once deleted."""
        expires = args.get("expires")
        artifact = artifact_service.resolve_link(artifact_id, name, expires, args.get("signature"))
        path = artifact_service.open_local(artifact)
        if path is None and request.method != "HEAD":
            return redirect(artifact_service.redirect_url(artifact, int(expires)), code=307)
        return file_response(artifact, path)


def file_response(artifact, path: str | None) -> Response:
    """The file, with single and multiple byte ranges as RFC 9110 section 14 says (Werkzeug
    refuses multiple ranges with a 416); HEAD gets the headers only."""
    size, etag = artifact.size, artifact.md5
    headers = {
        "ETag": quote_etag(etag),
        "Accept-Ranges": "bytes",
        "Last-Modified": artifact.created_at.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "Content-Disposition": _disposition(artifact.name),
        "Cache-Control": "private, max-age=0",
    }
    if _not_modified(etag):
        return Response(status=304, headers=headers)
    ranges = _ranges(size, etag)
    if ranges == []:
        return error_response(
            416,
            f"No requested range is within the file's {size} bytes",
            "range_not_satisfiable",
            headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
        )
    if ranges is None:
        return _stream(path, [(0, size)], size, artifact.media_type, 200, headers)
    if len(ranges) == 1:
        start, stop = ranges[0]
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        return _stream(path, ranges, stop - start, artifact.media_type, 206, headers)
    boundary = secrets.token_hex(16)
    parts = [
        (
            (
                f"--{boundary}\r\nContent-Type: {artifact.media_type}\r\n"
                f"Content-Range: bytes {start}-{stop - 1}/{size}\r\n\r\n"
            ).encode(),
            start,
            stop,
        )
        for start, stop in ranges
    ]
    closing = f"--{boundary}--\r\n".encode()
    length = sum(len(head) + stop - start + 2 for head, start, stop in parts) + len(closing)
    media_type = f"multipart/byteranges; boundary={boundary}"

    def body():
        with open(path, "rb") as source:
            for head, start, stop in parts:
                yield head
                yield from _read(source, start, stop)
                yield b"\r\n"
        yield closing

    return _response(body, length, media_type, 206, headers)


RAW_BODY_ENDPOINTS.add(("artifacts.ArtifactUpload", "PUT"))


def _ranges(size: int, etag: str) -> list[tuple[int, int]] | None:
    """The satisfiable ranges, in order and merged; None to send the whole file (no Range,
    an unparsable or non-byte one, a stale If-Range, too many ranges); [] for a 416."""
    header = request.headers.get("Range")
    if not header or request.method not in ("GET", "HEAD"):
        return None
    if_range = request.headers.get("If-Range")
    if if_range and unquote_etag(if_range)[0] != etag:
        return None
    specs = _parse_ranges(header)
    if specs is None or len(specs) > MAX_RANGES:
        return None
    wanted = []
    for first, last in specs:
        if first is None:  # the last `last` bytes
            start, stop = max(0, size - last), size
        else:
            start, stop = first, size if last is None else min(last + 1, size)
        if start < size and stop > start:
            wanted.append((start, stop))
    if not wanted:
        return []
    wanted.sort()
    merged = [wanted[0]]
    for start, stop in wanted[1:]:
        if start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged


RANGE_SPEC = re.compile(r"^(\d*)-(\d*)$")


def _parse_ranges(header: str) -> list[tuple[int | None, int | None]] | None:
    """`bytes=a-b, c-, -n` as (first, last) pairs; None when not a valid bytes range set."""
    units, _, value = header.partition("=")
    if units.strip().lower() != "bytes":
        return None
    specs = []
    for spec in value.split(","):
        match = RANGE_SPEC.match(spec.strip())
        if not match or not any(match.groups()):
            return None
        first = int(match[1]) if match[1] else None
        last = int(match[2]) if match[2] else None
        if first is not None and last is not None and last < first:
            return None
        specs.append((first, last))
    return specs


def _not_modified(etag: str) -> bool:
    if request.method not in ("GET", "HEAD"):
        return False
    header = request.headers.get("If-None-Match")
    return bool(header) and (header.strip() == "*" or etag in request.if_none_match)


def _read(source, start: int, stop: int):
    source.seek(start)
    remaining = stop - start
    while remaining > 0:
        chunk = source.read(min(READ_BYTES, remaining))
        if not chunk:
            raise OSError("Stored artifact is shorter than recorded")
        remaining -= len(chunk)
        yield chunk


def _stream(path, ranges, length, media_type, status, headers) -> Response:
    def body():
        with open(path, "rb") as source:
            for start, stop in ranges:
                yield from _read(source, start, stop)

    return _response(body, length, media_type, status, headers)


def _response(body, length, media_type, status, headers) -> Response:
    if request.method == "HEAD":
        response = Response(status=status, headers=headers, mimetype=media_type)
    else:
        response = Response(body(), status=status, headers=headers, mimetype=media_type)
        response.direct_passthrough = True
    response.headers["Content-Length"] = str(length)
    return response


def _disposition(name: str) -> str:
    from gefapi.storage.s3 import content_disposition

    return content_disposition(name)


@blp.route("/artifacts/usage")
class StorageUsage(MethodView):
    @login_required
    @blp.arguments(UsageArgs, location="query")
    @blp.documents(UsageSchema, many=True)
    def get(self, args):
        """Artifact storage used per user, largest first (ADMIN)"""
        rows = artifact_service.usage(by=current_user, user_id=args.get("user_id"))
        return envelope(UsageSchema(many=True).dump(rows))


@blp.route("/script/<script>/artifact-policy")
class ScriptArtifactPolicy(MethodView):
    @login_required
    @blp.documents(PolicySchema)
    def get(self, script):
        """How long the files of this script's runs are kept"""
        return envelope(PolicySchema().dump(artifact_service.get_policy(script, by=current_user)))

    @login_required
    @blp.arguments(PolicyUpdateSchema)
    @blp.documents(PolicySchema)
    def put(self, body, script):
        """Set this script's retention (owner or ADMIN), within the server's maximum"""
        policy = artifact_service.set_policy(
            script, retention_days=body["retention_days"], by=current_user
        )
        return envelope(PolicySchema().dump(policy))
