"""Verifies the OIDC token Cloud Tasks attaches to a push, when one is configured.

With ``WORKFLOW_CLOUDTASKS_SERVICE_ACCOUNT`` set, the driver asks Cloud Tasks to sign
each push with that service account's identity token (audience: the target base URL
unless ``WORKFLOW_CLOUDTASKS_OIDC_AUDIENCE`` says otherwise). The receiving route then
checks the token's signature against Google's published certificates, its audience,
its issuer and its e-mail, so a push cannot be forged by anyone who merely learned the
queue secret or the URL.

google-auth's ``verify_token`` fetches the certificates on every call; they change
daily at most, so they are cached here for an hour (refetched early when a token names
a key the cache lacks).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from google.auth import exceptions as google_exceptions
from google.auth import jwt

__all__ = ["GOOGLE_CERTS_URL", "OidcError", "OidcVerifier"]

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = frozenset({"https://accounts.google.com", "accounts.google.com"})
CERTS_TTL_S = 3600.0


class OidcError(Exception):
    """The push's token is missing or does not prove the configured identity."""


@dataclass
class OidcVerifier:
    service_account: str
    audience: str
    certs_url: str = GOOGLE_CERTS_URL
    issuers: frozenset[str] = GOOGLE_ISSUERS
    _certs: Mapping[str, str] = field(default_factory=dict)
    _fetched_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OidcVerifier | None:
        """None unless a service account is configured (then pushes must carry its token)."""
        account = env.get("WORKFLOW_CLOUDTASKS_SERVICE_ACCOUNT", "").strip()
        if not account:
            return None
        audience = (
            env.get("WORKFLOW_CLOUDTASKS_OIDC_AUDIENCE", "").strip()
            # As the driver issues it: the target URL without its trailing slash.
            or env.get("WORKFLOW_CLOUDTASKS_TARGET_BASE_URL", "").strip().rstrip("/")
        )
        if not audience:
            raise ValueError(
                "WORKFLOW_CLOUDTASKS_SERVICE_ACCOUNT is set but neither "
                "WORKFLOW_CLOUDTASKS_OIDC_AUDIENCE nor WORKFLOW_CLOUDTASKS_TARGET_BASE_URL is"
            )
        certs_url = env.get("STATEFLEET_OIDC_CERTS_URL", "").strip() or GOOGLE_CERTS_URL
        return cls(account, audience, certs_url)

    async def verify(self, authorization: str | None) -> Mapping[str, Any]:
        """The token's claims, or :class:`OidcError` saying what is wrong."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise OidcError("missing OIDC bearer token")
        token = authorization[7:].strip()
        try:
            header = jwt.decode_header(token)
        except (ValueError, google_exceptions.GoogleAuthError) as exc:
            raise OidcError(f"malformed token: {exc}") from None
        certs = await self._certificates(refresh_for=header.get("kid"))
        try:
            claims: Mapping[str, Any] = jwt.decode(token, certs=certs, audience=self.audience)
        except (ValueError, google_exceptions.GoogleAuthError) as exc:
            raise OidcError(f"invalid token: {exc}") from None
        if claims.get("iss") not in self.issuers:
            raise OidcError(f"unexpected issuer {claims.get('iss')!r}")
        if claims.get("email") != self.service_account or not claims.get("email_verified"):
            raise OidcError("token is not for the configured service account")
        return claims

    async def _certificates(self, refresh_for: str | None) -> Mapping[str, str]:
        async with self._lock:
            stale = time.monotonic() - self._fetched_at > CERTS_TTL_S
            unknown = refresh_for is not None and refresh_for not in self._certs
            if stale or unknown:
                async with httpx.AsyncClient(timeout=10) as client:
                    response = await client.get(self.certs_url)
                    response.raise_for_status()
                self._certs = dict(response.json())
                self._fetched_at = time.monotonic()
            return self._certs
