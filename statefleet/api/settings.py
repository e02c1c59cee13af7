"""API settings, read from the environment once at start-up (never per request)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import field

from statefleet.engine.record import record
from statefleet.engine.spec.limits import DEFAULT_SPEC_LIMITS, SpecLimits

__all__ = ["DEFAULT_BODY_TIMEOUT_MS", "DEFAULT_MAX_BODY_BYTES", "ApiSettings"]

#: 10 MiB: room for a batch of tens of thousands of small inputs, not for a DoS.
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
#: 5 s for a whole request body: 10 MiB needs only 2 MB/s, and a client that stalls
#: (a ``Content-Length`` larger than what it sends) stops holding a connection soon.
DEFAULT_BODY_TIMEOUT_MS = 5_000


@record
class ApiSettings:
    """What ``create_app`` needs.

    Attributes:
        database_url: Postgres DSN; unused when a pool is injected.
        admin_key: the bearer key of the admin routes; None disables them (403).
        max_body_bytes: larger request bodies answer 413 before they are read whole.
        body_timeout_ms: a body not complete this long after the route starts reading
            it answers 408 ``request_timeout`` and the connection is closed.
        env: the environment the queue driver is selected from (``drivers.config``).
        spec_limits: the default limits on a deployed spec; tenants may override them.
    """

    database_url: str | None = None
    admin_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout_ms: int = DEFAULT_BODY_TIMEOUT_MS
    env: Mapping[str, str] = field(default_factory=dict)
    spec_limits: SpecLimits = DEFAULT_SPEC_LIMITS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiSettings:
        """Settings from ``DATABASE_URL``, ``STATEFLEET_ADMIN_KEY`` and the body limit.

        Raises:
            ValueError: ``STATEFLEET_API_MAX_BODY_BYTES`` is not a positive integer.
        """
        env = dict(os.environ if env is None else env)
        raw = env.get("STATEFLEET_API_MAX_BODY_BYTES", "").strip()
        limit = int(raw) if raw else DEFAULT_MAX_BODY_BYTES
        if limit <= 0:
            raise ValueError("STATEFLEET_API_MAX_BODY_BYTES must be a positive integer")
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            admin_key=env.get("STATEFLEET_ADMIN_KEY") or None,
            max_body_bytes=limit,
            env=env,
        )
