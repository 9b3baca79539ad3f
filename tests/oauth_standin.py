"""A small OAuth 2.0 provider on 127.0.0.1 that stands in for Google (which is off this
machine): the authorization endpoint (RFC 6749 4.1.1, consent granted at once), the token
endpoint (authorization_code with PKCE S256 per RFC 7636, refresh_token, and the JWT-bearer
grant of service accounts per RFC 7523), and an Earth Engine-like URL that needs a token it
issued and a project it knows."""

import base64
import hashlib
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class Provider:
    def __init__(self, client_id: str, client_secret: str):
        self.client_id = client_id
        self.client_secret = client_secret
        self.codes: dict[str, dict] = {}
        self.refresh_tokens: set[str] = set()
        self.access_tokens: set[str] = set()
        self.service_accounts: dict[str, object] = {}  # client_email -> public key
        self.projects: set[str] = set()
        self.verifiers: list[str] = []  # every code_verifier received (secrets to grep for)
        self.token_requests: list[dict] = []
        self.issued: list[dict] = []  # every token answer, in order
        self.give_refresh_token = True
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.token_url = self.url + "/token"
        self.authorize_url = self.url + "/authorize"
        self.test_url = self.url + "/v1/projects/{project}/algorithms"

    def start(self):
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    # Grants ------------------------------------------------------------------------------

    def authorize(self, query: dict) -> tuple[int, dict, str]:
        if query.get("response_type") != "code" or query.get("client_id") != self.client_id:
            return 400, {}, "unauthorized_client"
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return 400, {}, "invalid_request: PKCE S256 required"
        code = secrets.token_urlsafe(24)
        self.codes[code] = {
            "challenge": query["code_challenge"],
            "redirect_uri": query["redirect_uri"],
        }
        target = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
        return 302, {"Location": target}, ""

    def token(self, form: dict) -> tuple[int, dict]:
        self.token_requests.append(form)
        grant = form.get("grant_type")
        if grant == JWT_BEARER:
            return self._jwt_bearer(form.get("assertion", ""))
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return 401, {"error": "invalid_client"}
        if grant == "authorization_code":
            self.verifiers.append(form.get("code_verifier", ""))
            issued = self.codes.pop(form.get("code", ""), None)
            if issued is None or issued["redirect_uri"] != form.get("redirect_uri"):
                return 400, {"error": "invalid_grant"}
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).decode().rstrip("=") != issued["challenge"]:
                return 400, {"error": "invalid_grant", "error_description": "PKCE mismatch"}
            return 200, self._tokens(refresh=self.give_refresh_token)
        if grant == "refresh_token":
            if form.get("refresh_token") not in self.refresh_tokens:
                return 400, {"error": "invalid_grant"}
            return 200, self._tokens(refresh=False)
        return 400, {"error": "unsupported_grant_type"}

    def _jwt_bearer(self, assertion: str) -> tuple[int, dict]:
        try:
            issuer = jwt.decode(assertion, options={"verify_signature": False})["iss"]
            key = self.service_accounts[issuer]
            jwt.decode(assertion, key, algorithms=["RS256"], audience=self.token_url)
        except (jwt.PyJWTError, KeyError):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT"}
        return 200, self._tokens(refresh=False)

    def _tokens(self, *, refresh: bool) -> dict:
        access = "ya29." + secrets.token_urlsafe(32)
        self.access_tokens.add(access)
        body = {"access_token": access, "expires_in": 3599, "token_type": "Bearer"}
        if refresh:
            body["refresh_token"] = "1//" + secrets.token_urlsafe(32)
            self.refresh_tokens.add(body["refresh_token"])
        self.issued.append(body)
        return body

    def _handler(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body=None, headers=None):
                payload = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path == "/authorize":
                    status, headers, error = provider.authorize(query)
                    self._send(status, {"error": error} if error else None, headers)
                    return
                segments = parts.path.split("/")
                if parts.path.startswith("/v1/projects/") and segments[-1] == "algorithms":
                    token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    if token not in provider.access_tokens:
                        self._send(401, {"error": {"status": "UNAUTHENTICATED"}})
                    elif segments[3] not in provider.projects:
                        self._send(403, {"error": {"status": "PERMISSION_DENIED"}})
                    else:
                        self._send(200, {"algorithms": []})
                    return
                self._send(404, {"error": "not_found"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                if urlsplit(self.path).path != "/token":
                    self._send(404, {"error": "not_found"})
                elif self.headers.get("Content-Type") != "application/x-www-form-urlencoded":
                    self._send(400, {"error": "invalid_request"})
                else:
                    form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                    self._send(*provider.token(form))

        return Handler
