"""Push routes verify Cloud Tasks' OIDC token when a service account is configured.

The certificates come from a real HTTP server on loopback and the tokens are real
RS256 JWTs signed with a key made here; only Google's key and URL are replaced.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from statefleet.api.app import create_app
from statefleet.api.settings import ApiSettings
from statefleet.drivers.memory import MemoryQueue
from statefleet.engine.store.db import create_pool
from tests.http_support import serving

ACCOUNT = "tasks@example-project.iam.gserviceaccount.com"
AUDIENCE = "https://worker.example.com"
URL = "/internal/queues/workflow-orchestrator"


def _key_and_cert() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-signer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private, cert.public_bytes(serialization.Encoding.PEM).decode()


PRIVATE_KEY, CERT = _key_and_cert()


def token(**overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "email": ACCOUNT,
        "email_verified": True,
        "iat": now,
        "exp": now + 600,
        **overrides,
    }
    signer = crypt.RSASigner.from_string(PRIVATE_KEY, key_id="k1")
    return jwt.encode(signer, claims).decode()


@pytest.fixture
def certs_url() -> Iterator[str]:
    class Certs(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"k1": CERT}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Certs) as url:
        yield f"{url}/certs"


@pytest_asyncio.fixture
async def http(database_dsn: str, certs_url: str) -> AsyncIterator[httpx.AsyncClient]:
    env = {
        "WORKFLOW_CLOUDTASKS_SERVICE_ACCOUNT": ACCOUNT,
        "WORKFLOW_CLOUDTASKS_TARGET_BASE_URL": AUDIENCE,
        "STATEFLEET_OIDC_CERTS_URL": certs_url,
    }
    pool = await create_pool(database_dsn)
    queue = MemoryQueue()
    app: Any = create_app(
        ApiSettings(database_url=database_dsn, env=env),
        pool=pool,
        queue=queue,
        run_engine=False,
    )
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://sf.test"
            ) as client,
        ):
            yield client
    finally:
        await queue.close()
        await pool.close()


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def test_a_push_without_a_valid_token_is_refused(http: httpx.AsyncClient) -> None:
    body = {"name": "event", "data": {}}
    answers = {
        "none": await http.post(URL, json=body),
        "garbage": await http.post(URL, json=body, headers=bearer("not.a.jwt")),
        "audience": await http.post(URL, json=body, headers=bearer(token(aud="https://x"))),
        "issuer": await http.post(URL, json=body, headers=bearer(token(iss="https://evil"))),
        "account": await http.post(URL, json=body, headers=bearer(token(email="x@evil.com"))),
        "expired": await http.post(
            URL, json=body, headers=bearer(token(iat=1_000_000, exp=1_000_600))
        ),
    }
    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(answers, 401)
    assert "service account" in answers["account"].json()["error"]["message"]


async def test_a_push_with_the_configured_identity_gets_past_authentication(
    http: httpx.AsyncClient,
) -> None:
    answer = await http.post(URL, json={"name": "event", "data": {}}, headers=bearer(token()))
    # Authenticated; this app's queue is not a push driver, which is the next check.
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "not_a_push_driver"
