"""The real OpenID provider for the SSO tests: npm ``oidc-provider`` run by Node.js.

Owns the test PKI (a CA made at fixture time and a certificate for 127.0.0.1), the
provider's signing keys (RS256 and ES256, rotatable by restarting on the same port), the
process itself (``tests/sso/idp/server.mjs``) and a small form-following user agent that
completes the device flow's user step, or an authorization code flow's, through the
provider's own pages. Web clients (the console's) are registered through the provider's own
dynamic client registration (RFC 7591).
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.pki import ca_and_server_cert

IDP_DIR = Path(__file__).resolve().parent / "idp"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SCOPE = "openid email profile groups offline_access"
SHORT_TTL_S = 4  # ID tokens of client phigate-short: session-expiry tests wait this long

USERS = {
    "alice": {"email": "alice@clinic.example", "preferred_username": "alice",
              "groups": ["clinicians"]},
    "bob": {"email": "bob@clinic.example", "preferred_username": "bob", "groups": ["engineers"]},
    "carol": {"email": "carol@clinic.example", "preferred_username": "carol",
              "groups": ["sre", "approvers"]},
    "priya": {"email": "priya@clinic.example", "preferred_username": "priya",
              "groups": ["compliance"]},
}


def email(user: str) -> str:
    return str(USERS[user]["email"])


@dataclass
class SigningKeys:
    """One generation of the provider's keys; private JWKs for the provider."""

    generation: int
    rsa_key: rsa.RSAPrivateKey = field(repr=False)
    ec_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def make(cls, generation: int) -> SigningKeys:
        return cls(generation, rsa.generate_private_key(65537, 2048),
                   ec.generate_private_key(ec.SECP256R1()))

    @property
    def rsa_kid(self) -> str:
        return f"rsa-{self.generation}"

    def jwks(self) -> list[dict[str, Any]]:
        rsa_jwk = RSAAlgorithm.to_jwk(self.rsa_key, as_dict=True)
        ec_jwk = ECAlgorithm.to_jwk(self.ec_key, as_dict=True)
        return [{**rsa_jwk, "kid": self.rsa_kid, "alg": "RS256", "use": "sig"},
                {**ec_jwk, "kid": f"ec-{self.generation}", "alg": "ES256", "use": "sig"}]


def make_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    ca, cert_pem, key_pem = ca_and_server_cert(directory)
    cert, key = directory / "idp.crt", directory / "idp-tls.key"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    os.chmod(key, 0o600)
    return ca, cert, key


class IdentityProviderMissing(RuntimeError):
    pass


class IdentityProvider:
    """``node tests/sso/idp/server.mjs`` on a fixed port; restartable with new keys."""

    def __init__(self, workdir: Path, port: int) -> None:
        node = shutil.which("node")
        if node is None or not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
            raise IdentityProviderMissing(
                "node and tests/sso/idp/node_modules/oidc-provider are required "
                "(run: npm install --prefix tests/sso/idp)")
        self.node = node
        self.workdir = workdir
        self.port = port
        self.issuer = f"https://127.0.0.1:{port}"
        self.ca, self.cert, self.tls_key = make_pki(workdir)
        self.keys = SigningKeys.make(1)
        self.process: subprocess.Popen[bytes] | None = None
        self.ssl_context = ssl.create_default_context(cafile=str(self.ca))
        self.registration_token = secrets.token_urlsafe(16)

    def start(self) -> IdentityProvider:
        settings = {"port": self.port, "tls_cert": str(self.cert), "tls_key": str(self.tls_key),
                    "keys": self.keys.jwks(), "users": USERS, "short_ttl": SHORT_TTL_S,
                    "cookie_key": secrets.token_hex(16),
                    "registration_token": self.registration_token}
        settings_path = self.workdir / "idp.json"
        settings_path.write_text(json.dumps(settings), encoding="utf-8")
        os.chmod(settings_path, 0o600)
        with (self.workdir / "idp.log").open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen([self.node, str(IDP_DIR / "server.mjs"),
                                             str(settings_path)], cwd=IDP_DIR, stdout=log,
                                            stderr=log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"oidc-provider exited:\n{self.log()}")
            if "listening" in self.log():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"oidc-provider did not start:\n{self.log()}")

    def log(self) -> str:
        return (self.workdir / "idp.log").read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        (self.workdir / "idp.log").write_bytes(b"")

    def rotate_keys(self) -> None:
        """Key rotation at the IdP: new keys (new kids), old ones gone."""
        self.stop()
        self.keys = SigningKeys.make(self.keys.generation + 1)
        self.start()

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.issuer}/test/stats", context=self.ssl_context) as r:
            return dict(json.load(r))

    def post(self, path: str, form: dict[str, str]) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.issuer}{path}",
                                         data=urllib.parse.urlencode(form).encode())
        try:
            with urllib.request.urlopen(request, context=self.ssl_context) as response:
                return dict(json.load(response))
        except urllib.error.HTTPError as e:
            return dict(json.load(e))

    def tokens(self, user: str, client_id: str = "phigate") -> dict[str, Any]:
        """A token response for ``user``, through the real device flow (no shortcuts)."""
        started = self.post("/device/auth", {"client_id": client_id, "scope": SCOPE})
        Browser(self.ssl_context).sign_in(started["verification_uri_complete"], user)
        answer = self.post("/token", {"grant_type": DEVICE_GRANT, "client_id": client_id,
                                      "device_code": started["device_code"]})
        if "id_token" not in answer:
            raise RuntimeError(f"device flow failed: {answer}")
        return answer

    def id_token(self, user: str, client_id: str = "phigate") -> str:
        return str(self.tokens(user, client_id)["id_token"])

    def register_web_client(self, redirect_uri: str) -> tuple[str, str]:
        """(client_id, client_secret) of a new confidential web client (RFC 7591)."""
        body = json.dumps({
            "redirect_uris": [redirect_uri], "grant_types": ["authorization_code"],
            "response_types": ["code"], "token_endpoint_auth_method": "client_secret_basic",
            "application_type": "web", "id_token_signed_response_alg": "RS256"}).encode()
        request = urllib.request.Request(f"{self.issuer}/reg", data=body, headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.registration_token}"})
        with urllib.request.urlopen(request, context=self.ssl_context) as response:
            client = json.load(response)
        return str(client["client_id"]), str(client["client_secret"])

    def next_id_token(self, client_id: str, token: str) -> None:
        """The provider's next token answer to ``client_id`` carries ``token`` instead."""
        self.post("/test/next-id-token", {"client_id": client_id, "id_token": token})


class _Forms(HTMLParser):
    """Every form on a page: action and the inputs' names and values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((values.get("action", ""), {}))
        elif tag == "input" and self.forms and "name" in values:
            self.forms[-1][1][values["name"]] = values.get("value", "")


class Redirected(Exception):
    """The provider sent the browser back to the client: ``url`` is where."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class _StopAt(urllib.request.HTTPRedirectHandler):
    """Follows redirects except those to ``prefix`` (the client's redirect URI)."""

    def __init__(self, prefix: str | None) -> None:
        self.prefix = prefix

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> Any:
        if self.prefix is not None and newurl.startswith(self.prefix):
            raise Redirected(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class Browser:
    """A person at a browser: follows the provider's pages, submits its forms, signs in."""

    def __init__(self, context: ssl.SSLContext, stop_at: str | None = None) -> None:
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            urllib.request.HTTPSHandler(context=context), _StopAt(stop_at))

    def authorize(self, authorization_url: str, user: str) -> str:
        """Sign ``user`` in at the provider; the redirect URI (with code and state) it sends
        the browser back to. Needs ``stop_at`` (the redirect URI)."""
        try:
            self.sign_in(authorization_url, user)
        except Redirected as back:
            return back.url
        raise RuntimeError("the provider never sent the browser back")

    def _open(self, url: str, form: dict[str, str] | None = None) -> tuple[str, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        with self.opener.open(url, data=data, timeout=10) as response:
            return response.geturl(), response.read().decode("utf-8", "replace")

    def sign_in(self, verification_uri: str, user: str) -> None:
        url, page = self._open(verification_uri)
        for _ in range(6):  # form_post → confirm → login → done
            if "Sign-in Success" in page:
                return
            parser = _Forms()
            parser.feed(page)
            if not parser.forms:
                raise RuntimeError(f"no form on {url}: {page[:500]}")
            action, fields = parser.forms[0]
            if "login" in fields:
                fields["login"] = user
            fields.setdefault("confirm", "yes") if "user_code" in fields else None
            url, page = self._open(urllib.parse.urljoin(url, action), fields)
        raise RuntimeError(f"device sign-in did not finish: {re.sub(r'<[^>]+>', ' ', page)}")
