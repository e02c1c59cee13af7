"""Every environment variable statefleet reads, declared once and validated once at start.

:class:`Settings` is the one reader, so that a typo in ``STATEFLEET_SHARDS`` stops the
process at start instead of surfacing minutes later inside a Ray actor, and so that one
can list what a process runs with: ``Settings.load()`` checks every variable up front
and reports every problem at once, naming each variable (:class:`ConfigError`), and the
components get plain, already-valid objects from it (:meth:`Settings.engine`,
:meth:`Settings.smtp`, ...), never the environment. ``statefleet config`` prints
:meth:`Settings.describe`. The client's ``STATEFLEET_URL`` / ``STATEFLEET_API_KEY`` are
declared here too (``statefleet config`` lists them) but read when a client is made
(:func:`statefleet.client.resolve_connection`): a library client must not fail on a
server variable it does not use.

Rules shared by every variable: an empty (or blank) value counts as unset, values are
stripped of surrounding whitespace (a secret mounted from a file often ends in a
newline), and choices (``STATEFLEET_BACKEND=Ray``) are case-insensitive. The one
exception is ``WORKFLOW_CLOUDTASKS_QUEUE_PREFIX``, where an empty value is how one says
"no prefix" while ``APP_ENV`` is set, exactly as the Cloud Tasks driver reads it.

The heavy modules (the engine runtime, the handlers, the API) are imported only by the
methods that build their objects, so ``load`` stays a few milliseconds of pure parsing:
``statefleet config`` and every command's start pay nothing for components they skip.
``docs/configuration.md`` documents the variables in the order the fields are declared.
"""

from __future__ import annotations

import functools
import os
import pathlib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from statefleet.drivers.config import DriverName, QueueConfigError, select_driver

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

    from statefleet.api.settings import ApiSettings
    from statefleet.engine.handlers import AiSettings, HandlerFactory, SmtpSettings
    from statefleet.engine.logging_setup import LogSettings
    from statefleet.engine.runtime.settings import EngineSettings
    from statefleet.engine.spec.limits import SpecLimits
    from statefleet.engine.tracing import TraceSettings

__all__ = ["ConfigError", "Settings"]

#: Kept equal to ``statefleet.api.settings.DEFAULT_MAX_BODY_BYTES`` (a unit test checks),
#: not imported from there: importing the API pulls in FastAPI.
DEFAULT_MAX_BODY_BYTES: Final = 10 * 1024 * 1024
#: Kept equal to ``statefleet.api.settings.DEFAULT_BODY_TIMEOUT_MS``, for the same reason.
DEFAULT_BODY_TIMEOUT_MS: Final = 5_000
#: Kept equal to ``statefleet.api.oidc.GOOGLE_CERTS_URL``, for the same reason.
GOOGLE_CERTS_URL: Final = "https://www.googleapis.com/oauth2/v1/certs"

#: The fields ``engine()`` copies into ``EngineSettings``, one per dataclass field (a unit
#: test keeps the two in step). Each is read from ``STATEFLEET_<NAME IN UPPER CASE>``.
ENGINE_FIELDS: Final = (
    "shards",
    "pools",
    "max_resident",
    "idle_ms",
    "event_batch_size",
    "event_batch_wait_ms",
    "event_concurrency",
    "shard_commit_batch",
    "shard_commit_concurrency",
    "task_batch_size",
    "task_batch_wait_ms",
    "task_concurrency",
    "task_type_limit",
    "task_default_lease_ms",
    "task_lease_margin_ms",
    "task_handover_limit",
    "db_pool_size",
    "sweep_interval_ms",
    "sweep_grace_ms",
    "sweep_event_grace_ms",
    "schedule_poll_ms",
    "admission_poll_ms",
    "admission_lanes",
    "admission_event_batch",
    "admission_task_batch",
    "metrics_flush_ms",
    "step_max_microsteps",
    "step_time_budget_ms",
    "gc_gen0_threshold",
)

#: Variables whose empty value means something (see the module docstring).
_EMPTY_IS_A_VALUE: Final = frozenset({"WORKFLOW_CLOUDTASKS_QUEUE_PREFIX"})
#: Values pydantic reads as true; the SMTP cross-check parses flags before validation.
_TRUE_WORDS: Final = frozenset({"1", "on", "t", "true", "y", "yes"})
_DSN_FIELDS: Final = ("database_url", "redis_url")
_SECRET_QUERY_KEY = re.compile(r"([?&;][^=&#]*(?:pass|pwd|secret|token|key)[^=&#]*=)[^&#]*", re.I)
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('[^']*'|\S+)", re.I)
_MASK: Final = "***"
#: The replacement that keeps a pattern's first group (``password=``) and masks the rest.
_MASKED_GROUP: Final = rf"\g<1>{_MASK}"


class ConfigError(ValueError):
    """The environment cannot run statefleet; ``problems`` lists each one with its variable.

    One error for all problems, so an operator fixes a deployment in one round instead
    of discovering its mistakes one restart at a time.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            lines = "\n".join(f"  - {problem}" for problem in self.problems)
            message = f"{len(self.problems)} configuration problems:\n{lines}"
        super().__init__(message)


def _choice(value: object) -> object:
    """Choices compare case-insensitively: ``STATEFLEET_BACKEND=Local`` means ``local``."""
    return value.strip().lower() if isinstance(value, str) else value


Backend = Annotated[Literal["ray", "local"], BeforeValidator(_choice)]
RayResources = Annotated[Literal["require", "wait", "off"], BeforeValidator(_choice)]
QueueDriver = Annotated[DriverName, BeforeValidator(_choice)]
AiProvider = Annotated[Literal["openai", "anthropic"], BeforeValidator(_choice)]
AiResponseFormat = Annotated[
    Literal["json_schema", "json_object", "none"], BeforeValidator(_choice)
]
LogFormat = Annotated[Literal["text", "json"], BeforeValidator(_choice)]
LogLevel = Annotated[
    Literal["debug", "info", "warning", "error", "critical"], BeforeValidator(_choice)
]


def _dsn(schemes: tuple[str, ...]) -> BeforeValidator:
    """A URL of one of ``schemes``: a bare ``host:port`` otherwise fails at first connect."""

    def check(value: object) -> object:
        if isinstance(value, str) and not value.strip().lower().startswith(schemes):
            raise ValueError(f"must be a URL starting with {' or '.join(schemes)}")
        return value

    return BeforeValidator(check)


def _names(pattern: str, what: str) -> BeforeValidator:
    """A comma-separated list (blanks dropped), each item matching ``pattern``."""
    compiled = re.compile(pattern)

    def split(value: object) -> object:
        if not isinstance(value, str):
            return value
        items = tuple(item.strip() for item in value.split(",") if item.strip())
        bad = [item for item in items if not compiled.fullmatch(item)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))}: each item must be {what}")
        return items

    return BeforeValidator(split)


#: Python modules, ``package.module`` (``STATEFLEET_HANDLER_MODULES``).
ModuleNames = Annotated[
    tuple[str, ...], _names(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", "a module name (a.b.c)")
]
#: Environment variable name prefixes (``STATEFLEET_HANDLER_ENV``).
EnvPrefixes = Annotated[
    tuple[str, ...], _names(r"[A-Za-z_][A-Za-z0-9_]*", "a variable name prefix (A_Z0_9_)")
]

PostgresUrl = Annotated[str, _dsn(("postgresql://", "postgres://"))]
RedisUrl = Annotated[str, _dsn(("redis://", "rediss://", "unix://"))]
Positive = Annotated[int, Field(ge=1)]
Port = Annotated[int, Field(ge=1, le=65_535)]
#: ``~`` expanded, as a shell would have, since the value often comes from a YAML file.
HomePath = Annotated[pathlib.Path, AfterValidator(pathlib.Path.expanduser)]


def _env(*names: str, default: Any = None, **kwargs: Any) -> Any:
    """A field read from ``names``, the first set one winning (later names are old aliases)."""
    alias = names[0] if len(names) == 1 else AliasChoices(*names)
    if "default_factory" in kwargs:
        return Field(validation_alias=alias, **kwargs)
    return Field(default, validation_alias=alias, **kwargs)


def _variables(field: FieldInfo) -> tuple[str, ...]:
    alias = field.validation_alias
    if isinstance(alias, str):
        return (alias,)
    assert isinstance(alias, AliasChoices), "every field is declared with _env"
    return tuple(choice for choice in alias.choices if isinstance(choice, str))


def _is_set(variable: str, env: Mapping[str, str]) -> bool:
    """Whether ``env`` sets ``variable``: blank counts as unset, except where it is a value."""
    if variable in _EMPTY_IS_A_VALUE:
        return variable in env
    return bool(env.get(variable, "").strip())


def _mask_url(value: str) -> str:
    """``value`` with the password of a URL (or a ``password=`` keyword) replaced by ``***``.

    The user-info ends at the last ``@`` before any ``?`` or ``#``, not at the first
    ``/`` as ``urlsplit`` has it, so that a password with an unencoded ``/`` is hidden
    whole rather than half shown.
    """
    scheme, separator, rest = value.partition("://")
    if not separator:
        return _KEYWORD_PASSWORD.sub(_MASKED_GROUP, value)
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    if at >= 0 and ":" in rest[:at]:
        user = rest[:at].partition(":")[0]
        rest = f"{user}:{_MASK}{rest[at:]}"
    return f"{scheme}://{_SECRET_QUERY_KEY.sub(_MASKED_GROUP, rest)}"


def _show(value: object) -> str:
    """How ``describe`` prints a value: secrets masked, unset as an empty string."""
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return _MASK
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, str):
        return _mask_url(value)
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


_PHRASES: Final = {
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "bool_parsing": "must be a boolean (true/false, yes/no, on/off, 1/0)",
}


def _phrase(error: ErrorDetails) -> str:
    """Pydantic's message, reworded for someone editing an environment, not Python."""
    kind = error["type"]
    ctx = error.get("ctx", {})
    if kind in _PHRASES:
        return _PHRASES[kind]
    if kind == "greater_than_equal" and ctx.get("ge") == 1:
        return "must be a positive integer"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "greater_than" and ctx.get("gt") == 0:
        return "must be a positive number"
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt')}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return error["msg"]


class Settings(BaseSettings):
    """The whole configuration of a statefleet process; build it with :meth:`load`.

    Fields are declared in the order of ``docs/configuration.md``, and each one's
    ``validation_alias`` is its variable (with older names after it). Only ``load``
    reads an environment: constructing ``Settings(...)`` reads neither ``os.environ``
    nor ``.env`` files nor secrets directories, so tests and embedders get exactly what
    they pass in.
    """

    model_config = SettingsConfigDict(
        frozen=True,
        extra="ignore",
        str_strip_whitespace=True,
        # Errors are reworded by ``load``, which masks secrets; pydantic's own never show input.
        hide_input_in_errors=True,
    )

    # --- database
    database_url: PostgresUrl | None = _env("DATABASE_URL")

    # --- where the engine runs
    backend: Backend = _env("STATEFLEET_BACKEND", default="ray")
    ray_address: str | None = _env("RAY_ADDRESS")
    ray_resources: RayResources = _env("STATEFLEET_RAY_RESOURCES", default="require")

    # --- HTTP API
    api_host: str = _env("STATEFLEET_API_HOST", default="127.0.0.1")
    api_port: Port = _env("STATEFLEET_API_PORT", default=8080)
    admin_key: SecretStr | None = _env("STATEFLEET_ADMIN_KEY")
    api_max_body_bytes: Positive = _env(
        "STATEFLEET_API_MAX_BODY_BYTES", default=DEFAULT_MAX_BODY_BYTES
    )
    api_body_timeout_ms: Positive = _env(
        "STATEFLEET_API_BODY_TIMEOUT_MS", default=DEFAULT_BODY_TIMEOUT_MS
    )

    # --- the worker's own HTTP server
    worker_host: str = _env("STATEFLEET_WORKER_HOST", default="127.0.0.1")
    worker_port: Port = _env("STATEFLEET_WORKER_PORT", default=8081)

    # --- queue driver (``load`` stores ``select_driver``'s choice, not the raw value)
    queue_driver: QueueDriver = _env("WORKFLOW_QUEUE_DRIVER", default="memory")
    app_env: str | None = _env("APP_ENV")
    redis_url: RedisUrl = _env("REDIS_URL", default="redis://localhost:6379")
    bullmq_prefix: str = _env("WORKFLOW_BULLMQ_PREFIX", default="bull")

    # --- Cloud Tasks
    cloudtasks_project: str | None = _env("GOOGLE_CLOUD_PROJECT")
    cloudtasks_location: str | None = _env("WORKFLOW_CLOUDTASKS_LOCATION")
    cloudtasks_target_base_url: str | None = _env("WORKFLOW_CLOUDTASKS_TARGET_BASE_URL")
    #: Derived from ``APP_ENV`` when unset (see ``_derived_defaults``).
    cloudtasks_queue_prefix: str = _env("WORKFLOW_CLOUDTASKS_QUEUE_PREFIX", default="")
    cloudtasks_service_account: str | None = _env("WORKFLOW_CLOUDTASKS_SERVICE_ACCOUNT")
    #: The target base URL when unset (see ``_derived_defaults``).
    cloudtasks_oidc_audience: str | None = _env("WORKFLOW_CLOUDTASKS_OIDC_AUDIENCE")
    oidc_certs_url: str = _env("STATEFLEET_OIDC_CERTS_URL", default=GOOGLE_CERTS_URL)
    queue_secret: SecretStr | None = _env("WORKFLOW_QUEUE_SECRET")
    cloudtasks_emulator_host: str | None = _env("WORKFLOW_CLOUDTASKS_EMULATOR_HOST")

    # --- engine (``EngineSettings``; see ENGINE_FIELDS)
    shards: Positive = _env("STATEFLEET_SHARDS", default_factory=lambda: os.cpu_count() or 1)
    pools: Positive = _env("STATEFLEET_POOLS", default=1)
    max_resident: Positive = _env("STATEFLEET_MAX_RESIDENT", default=10_000)
    idle_ms: Positive = _env("STATEFLEET_IDLE_MS", default=60_000)
    event_batch_size: Positive = _env(
        "STATEFLEET_EVENT_BATCH_SIZE", "STATEFLEET_EVENT_BATCH", default=1_000
    )
    event_batch_wait_ms: Positive = _env("STATEFLEET_EVENT_BATCH_WAIT_MS", default=5)
    event_concurrency: Positive = _env("STATEFLEET_EVENT_CONCURRENCY", default=4)
    shard_commit_batch: Positive = _env("STATEFLEET_SHARD_COMMIT_BATCH", default=512)
    shard_commit_concurrency: Positive = _env("STATEFLEET_SHARD_COMMIT_CONCURRENCY", default=2)
    task_batch_size: Positive = _env(
        "STATEFLEET_TASK_BATCH_SIZE", "STATEFLEET_TASK_BATCH", default=200
    )
    task_batch_wait_ms: Positive = _env("STATEFLEET_TASK_BATCH_WAIT_MS", default=5)
    task_concurrency: Positive = _env("STATEFLEET_TASK_CONCURRENCY", default=8)
    task_type_limit: Positive = _env("STATEFLEET_TASK_TYPE_LIMIT", default=64)
    task_default_lease_ms: Positive = _env("STATEFLEET_TASK_DEFAULT_LEASE_MS", default=15_000)
    task_lease_margin_ms: Positive = _env("STATEFLEET_TASK_LEASE_MARGIN_MS", default=5_000)
    task_handover_limit: Positive = _env("STATEFLEET_TASK_HANDOVER_LIMIT", default=5_000)
    db_pool_size: Positive = _env("STATEFLEET_DB_POOL_SIZE", default=4)
    sweep_interval_ms: Positive = _env("STATEFLEET_SWEEP_INTERVAL_MS", default=5_000)
    sweep_grace_ms: Positive = _env("STATEFLEET_SWEEP_GRACE_MS", default=10_000)
    sweep_event_grace_ms: Positive = _env("STATEFLEET_SWEEP_EVENT_GRACE_MS", default=60_000)
    schedule_poll_ms: Positive = _env("STATEFLEET_SCHEDULE_POLL_MS", default=1_000)
    admission_poll_ms: Positive = _env("STATEFLEET_ADMISSION_POLL_MS", default=100)
    admission_lanes: Positive = _env("STATEFLEET_ADMISSION_LANES", default=4)
    admission_event_batch: Positive = _env("STATEFLEET_ADMISSION_EVENT_BATCH", default=500)
    admission_task_batch: Positive = _env("STATEFLEET_ADMISSION_TASK_BATCH", default=200)
    metrics_flush_ms: Positive = _env("STATEFLEET_METRICS_FLUSH_MS", default=5_000)
    step_max_microsteps: Positive = _env("STATEFLEET_STEP_MAX_MICROSTEPS", default=1_000)
    step_time_budget_ms: Positive = _env("STATEFLEET_STEP_TIME_BUDGET_MS", default=1_000)
    gc_gen0_threshold: Positive = _env("STATEFLEET_GC_GEN0_THRESHOLD", default=50_000)

    # --- spec limits at deploy (``SpecLimits``; tenants may override them)
    spec_max_states: Positive = _env("STATEFLEET_SPEC_MAX_STATES", default=5_000)
    spec_max_regions: Positive = _env("STATEFLEET_SPEC_MAX_REGIONS", default=1_000)
    spec_max_depth: Positive = _env("STATEFLEET_SPEC_MAX_DEPTH", default=16)
    spec_max_transitions: Positive = _env("STATEFLEET_SPEC_MAX_TRANSITIONS", default=10_000)
    spec_max_expression_length: Positive = _env(
        "STATEFLEET_SPEC_MAX_EXPRESSION_LENGTH", default=2_000
    )
    spec_max_spec_bytes: Positive = _env("STATEFLEET_SPEC_MAX_SPEC_BYTES", default=1_048_576)

    # --- e-mail (``EMAIL`` tasks)
    smtp_host: str = _env("STATEFLEET_SMTP_HOST", default="localhost")
    smtp_port: Port = _env("STATEFLEET_SMTP_PORT", default=25)
    smtp_username: str | None = _env("STATEFLEET_SMTP_USERNAME")
    smtp_password: SecretStr | None = _env("STATEFLEET_SMTP_PASSWORD")
    smtp_from: str = _env("STATEFLEET_SMTP_FROM", default="statefleet@localhost")
    smtp_starttls: bool = _env("STATEFLEET_SMTP_STARTTLS", default=False)
    smtp_tls: bool = _env("STATEFLEET_SMTP_TLS", default=False)
    smtp_timeout: float = _env("STATEFLEET_SMTP_TIMEOUT", default=30.0, gt=0)

    # --- users' task handlers (docs/handlers.md)
    handler_modules: ModuleNames = _env("STATEFLEET_HANDLER_MODULES", default=())
    handler_env: EnvPrefixes = _env("STATEFLEET_HANDLER_ENV", default=())

    # --- AI tasks
    ai_provider: AiProvider = _env("STATEFLEET_AI_PROVIDER", default="openai")
    ai_base_url: str | None = _env("STATEFLEET_AI_BASE_URL")
    ai_api_key: SecretStr | None = _env("STATEFLEET_AI_API_KEY")
    ai_model: str | None = _env("STATEFLEET_AI_MODEL")
    ai_timeout_ms: Positive = _env("STATEFLEET_AI_TIMEOUT_MS", default=60_000)
    ai_response_format: AiResponseFormat = _env(
        "STATEFLEET_AI_RESPONSE_FORMAT", default="json_schema"
    )
    openai_api_key: SecretStr | None = _env("OPENAI_API_KEY")
    anthropic_api_key: SecretStr | None = _env("ANTHROPIC_API_KEY")

    # --- statefleet up (embedded Postgres)
    home: HomePath = _env(
        "STATEFLEET_HOME", default_factory=lambda: pathlib.Path.home() / ".statefleet"
    )
    pg_account: str = _env("STATEFLEET_PG_ACCOUNT", default="statefleet-pg")

    # --- the client commands
    client_url: str = _env("STATEFLEET_URL", default="http://127.0.0.1:8080")
    client_api_key: SecretStr | None = _env("STATEFLEET_API_KEY")

    # --- logging (every process: api, worker, up, and the actors)
    log_level: LogLevel = _env("STATEFLEET_LOG_LEVEL", default="info")
    log_format: LogFormat = _env("STATEFLEET_LOG_FORMAT", default="text")

    # --- shutdown (up, worker)
    drain_timeout_ms: Positive = _env("STATEFLEET_DRAIN_TIMEOUT_MS", default=10_000)

    # --- tracing (OpenTelemetry; off unless the endpoint is set)
    otel_endpoint: str | None = _env("OTEL_EXPORTER_OTLP_ENDPOINT")
    otel_service_name: str = _env("OTEL_SERVICE_NAME", default="statefleet")

    _env_mapping: dict[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what ``load`` passes: a stray ``.env`` must never change a deployment."""
        return (init_settings,)

    @model_validator(mode="before")
    @classmethod
    def _derived_defaults(cls, data: Any) -> Any:
        """Defaults that follow other variables, derived as the Cloud Tasks driver and the
        OIDC check derive them, so that ``describe`` shows what they will use."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        app_env = str(data.get("APP_ENV") or "").strip()
        data.setdefault("WORKFLOW_CLOUDTASKS_QUEUE_PREFIX", f"{app_env}-" if app_env else "")
        target = data.get("WORKFLOW_CLOUDTASKS_TARGET_BASE_URL")
        if target is not None:
            # The driver's default audience: the target URL without a trailing slash.
            data.setdefault("WORKFLOW_CLOUDTASKS_OIDC_AUDIENCE", str(target).strip().rstrip("/"))
        return data

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> Settings:
        """From ``env`` (default os.environ) only -- NO .env files, no secrets dirs.

        Pure and fast (no network, no heavy imports), so every command can call it first
        and fail before starting anything.

        Raises:
            ConfigError: every invalid value, unknown choice, and missing or conflicting
                variable, each named.
        """
        raw = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for field in cls.model_fields.values():
            for name in _variables(field):
                if _is_set(name, raw):
                    values[name] = raw[name]
        problems: list[str] = []
        try:
            values["WORKFLOW_QUEUE_DRIVER"] = select_driver(raw)
        except QueueConfigError as exc:
            problems.append(str(exc))
            values.pop("WORKFLOW_QUEUE_DRIVER", None)
        settings: Settings | None = None
        try:
            settings = cls(**values)
        except ValidationError as exc:
            problems.extend(_problem(error, raw) for error in exc.errors())
        problems.extend(_cross_checks(values))
        if problems or settings is None:
            raise ConfigError(problems)
        settings._env_mapping = raw
        return settings

    @property
    def env(self) -> dict[str, str]:
        """The raw mapping it was loaded from (queue drivers still take it)."""
        return dict(self._env_mapping)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """Secrets are ``SecretStr`` already; this hides the passwords inside the DSNs."""
        for name, value in super().__repr_args__():
            yield name, _mask_url(value) if name in _DSN_FIELDS and value else value

    def engine(self) -> EngineSettings:
        """The engine's knobs, for the shards, pools and engine loop."""
        from statefleet.engine.runtime.settings import EngineSettings

        return EngineSettings(**{name: getattr(self, name) for name in ENGINE_FIELDS})

    def spec_limits(self) -> SpecLimits:
        """The default limits on a deployed spec (``STATEFLEET_SPEC_MAX_*``)."""
        from statefleet.engine.spec.limits import LIMIT_NAMES, SpecLimits

        return SpecLimits(**{name: getattr(self, f"spec_{name}") for name in LIMIT_NAMES})

    def logging(self) -> LogSettings:
        """``STATEFLEET_LOG_LEVEL`` and ``STATEFLEET_LOG_FORMAT``, for ``configure_logging``."""
        from statefleet.engine.logging_setup import LogSettings

        return LogSettings(level=self.log_level.upper(), format=self.log_format)

    def tracing(self) -> TraceSettings:
        """Where spans go (``OTEL_EXPORTER_OTLP_ENDPOINT``), for ``configure_tracing``."""
        from statefleet.engine.tracing import TraceSettings

        return TraceSettings(endpoint=self.otel_endpoint, service_name=self.otel_service_name)

    def smtp(self) -> SmtpSettings:
        """Where ``EMAIL`` tasks go; the defaults (localhost:25) when nothing is set."""
        from statefleet.engine.handlers import SmtpSettings

        return SmtpSettings(
            host=self.smtp_host,
            port=self.smtp_port,
            username=self.smtp_username,
            password=_secret(self.smtp_password),
            sender=self.smtp_from,
            starttls=self.smtp_starttls,
            use_tls=self.smtp_tls,
            timeout_s=self.smtp_timeout,
        )

    @property
    def smtp_configured(self) -> bool:
        """Whether ``STATEFLEET_SMTP_HOST`` was set: ``statefleet up`` runs a mail sink if not."""
        return "smtp_host" in self.model_fields_set

    def ai(self) -> AiSettings:
        """The AI provider; the key falls back to the provider's own variable."""
        from statefleet.engine.handlers import AiSettings

        anthropic = self.ai_provider == "anthropic"
        vendor_key = self.anthropic_api_key if anthropic else self.openai_api_key
        return AiSettings(
            provider=self.ai_provider,
            base_url=self.ai_base_url,
            api_key=_secret(self.ai_api_key) or _secret(vendor_key),
            model=self.ai_model,
            timeout_ms=self.ai_timeout_ms,
            response_format=self.ai_response_format,
        )

    def api(self) -> ApiSettings:
        """What ``create_app`` needs; ``env`` goes along for the queue driver."""
        from statefleet.api.settings import ApiSettings

        return ApiSettings(
            database_url=self.database_url,
            admin_key=_secret(self.admin_key),
            max_body_bytes=self.api_max_body_bytes,
            body_timeout_ms=self.api_body_timeout_ms,
            env=self.env,
            spec_limits=self.spec_limits(),
        )

    def handlers(self) -> HandlerFactory:
        """The built-in handlers with these settings, picklable to any Ray node.

        A partial of a module-level function carries the SMTP and AI settings with it,
        so a pool actor on another node never reads that node's environment.
        """
        from statefleet.registries import builtin_registry

        return functools.partial(
            builtin_registry,
            self.smtp(),
            self.ai(),
            self.handler_modules,
            self.handler_settings(),
        )

    def handler_settings(self) -> dict[str, str]:
        """The variables ``STATEFLEET_HANDLER_ENV`` names (by prefix), as this process sees
        them: users' handler classes get them in their constructor, on any Ray node."""
        prefixes = self.handler_env
        return {
            name: value
            for name, value in sorted(self._env_mapping.items())
            if prefixes and name.startswith(prefixes)
        }

    def describe(self) -> list[tuple[str, str, str]]:
        """(variable, value shown, source) for every variable, in docs order.

        Secrets (passwords, API keys, admin key, queue secret, and the password inside
        DATABASE_URL / REDIS_URL) are masked as '***', so the output can be pasted into
        an issue; source is 'env' or 'default'. An old alias that supplied the value is
        shown under its own name, so the row points at the variable actually set.
        """
        rows = []
        for name, field in type(self).model_fields.items():
            names = _variables(field)
            given = [n for n in names if _is_set(n, self._env_mapping)]
            variable = given[0] if given else names[0]
            rows.append((variable, _show(getattr(self, name)), "env" if given else "default"))
        return rows


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _secret_variables() -> frozenset[str]:
    """Variables whose values are never shown, not even in error messages."""
    return frozenset(
        name
        for field in Settings.model_fields.values()
        if field.annotation is not None and SecretStr in getattr(field.annotation, "__args__", ())
        for name in _variables(field)
    )


_SECRET_VARIABLES: Final = _secret_variables()


def _problem(error: ErrorDetails, env: Mapping[str, str]) -> str:
    """``VARIABLE='value': what is wrong``, with the value masked when it is a secret."""
    variable = str(error["loc"][0]) if error["loc"] else "configuration"
    value = env.get(variable)
    if value is None:
        return f"{variable}: {_phrase(error)}"
    shown = _MASK if variable in _SECRET_VARIABLES else _mask_url(value.strip())
    return f"{variable}={shown!r}: {_phrase(error)}"


def _cross_checks(values: Mapping[str, Any]) -> list[str]:
    """Problems between variables, judged on the raw values so that they are reported
    together with the invalid ones (pydantic builds no model once a field fails).

    ``values`` holds the set variables, with ``select_driver``'s choice in
    ``WORKFLOW_QUEUE_DRIVER`` (absent when that choice failed).
    """
    found = []
    if values.get("WORKFLOW_QUEUE_DRIVER") == "cloudtasks":
        required = (
            "GOOGLE_CLOUD_PROJECT",
            "WORKFLOW_CLOUDTASKS_LOCATION",
            "WORKFLOW_CLOUDTASKS_TARGET_BASE_URL",
        )
        missing = [name for name in required if name not in values]
        if missing:
            found.append(f"the cloudtasks queue driver needs {', '.join(missing)}")
    if "WORKFLOW_CLOUDTASKS_SERVICE_ACCOUNT" in values and not (
        "WORKFLOW_CLOUDTASKS_OIDC_AUDIENCE" in values
        or "WORKFLOW_CLOUDTASKS_TARGET_BASE_URL" in values
    ):
        found.append(
            "WORKFLOW_CLOUDTASKS_SERVICE_ACCOUNT is set but neither "
            "WORKFLOW_CLOUDTASKS_OIDC_AUDIENCE nor WORKFLOW_CLOUDTASKS_TARGET_BASE_URL is "
            "(the audience its OIDC tokens are checked against)"
        )
    flags = ("STATEFLEET_SMTP_STARTTLS", "STATEFLEET_SMTP_TLS")
    if all(str(values.get(flag, "")).strip().lower() in _TRUE_WORDS for flag in flags):
        found.append(
            "STATEFLEET_SMTP_STARTTLS and STATEFLEET_SMTP_TLS are both on; choose one "
            "(STARTTLS upgrades a plain connection, TLS is encrypted from the start)"
        )
    return found
