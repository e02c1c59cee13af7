"""``statefleet.config.Settings``: every variable, its default, its validation, its masking."""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import pickle
import re
import subprocess
import sys
from typing import Any, get_args

import orjson
import pytest
from click.testing import CliRunner

from statefleet.cli import statefleet
from statefleet.config import ENGINE_FIELDS, ConfigError, Settings
from statefleet.engine.handlers import AiSettings, HandlerRegistry, SmtpSettings
from statefleet.engine.runtime.settings import EngineSettings

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "configuration.md"

#: Every variable ``describe`` lists (primary names), from an empty environment.
VARIABLES = [variable for variable, _, _ in Settings.load({}).describe()]

#: One distinct value per secret, so that a leak of any of them is found by search.
SECRETS = {
    "STATEFLEET_ADMIN_KEY": "admin-key-0001",
    "WORKFLOW_QUEUE_SECRET": "queue-secret-0002",
    "STATEFLEET_SMTP_PASSWORD": "smtp-password-0003",
    "STATEFLEET_AI_API_KEY": "ai-key-0004",
    "OPENAI_API_KEY": "openai-key-0005",
    "ANTHROPIC_API_KEY": "anthropic-key-0006",
    "STATEFLEET_API_KEY": "client-key-0007",
}


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process environment without any statefleet variable (CI sets DATABASE_URL)."""
    for variable in [*VARIABLES, "STATEFLEET_EVENT_BATCH", "STATEFLEET_TASK_BATCH"]:
        monkeypatch.delenv(variable, raising=False)


def _problems(env: dict[str, str]) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        Settings.load(env)
    return caught.value.problems


def _rows(settings: Settings) -> dict[str, tuple[str, str]]:
    return {variable: (value, source) for variable, value, source in settings.describe()}


# --- defaults -------------------------------------------------------------------


def test_defaults() -> None:
    settings = Settings.load({})
    assert settings.database_url is None
    assert settings.queue_driver == "memory"
    assert settings.ray_address is None
    assert settings.ray_resources == "require"
    assert settings.backend == "ray"
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8080)
    assert (settings.worker_host, settings.worker_port) == ("127.0.0.1", 8081)
    assert settings.home == pathlib.Path.home() / ".statefleet"
    assert settings.pg_account == "statefleet-pg"
    assert settings.redis_url == "redis://localhost:6379"
    assert settings.bullmq_prefix == "bull"
    assert settings.cloudtasks_queue_prefix == ""
    assert settings.cloudtasks_oidc_audience is None
    assert settings.client_url == "http://127.0.0.1:8080"
    assert settings.shards == (os.cpu_count() or 1)
    assert settings.smtp_configured is False
    assert settings.env == {}
    assert {source for _, _, source in settings.describe()} == {"default"}


def test_defaults_match_the_objects_they_build() -> None:
    """The defaults are declared twice (here and in each dataclass); they must agree."""
    settings = Settings.load({})
    assert settings.engine() == EngineSettings()
    assert settings.smtp() == SmtpSettings()
    assert settings.ai() == AiSettings()
    from statefleet.api.settings import ApiSettings

    assert settings.api() == ApiSettings(env={})


def test_constants_copied_to_keep_load_light_match_their_sources() -> None:
    from statefleet import config
    from statefleet.api.oidc import GOOGLE_CERTS_URL
    from statefleet.api.settings import DEFAULT_BODY_TIMEOUT_MS, DEFAULT_MAX_BODY_BYTES
    from statefleet.engine.handlers.ai import PROVIDERS, RESPONSE_FORMATS

    assert config.GOOGLE_CERTS_URL == GOOGLE_CERTS_URL
    assert config.DEFAULT_MAX_BODY_BYTES == DEFAULT_MAX_BODY_BYTES
    assert config.DEFAULT_BODY_TIMEOUT_MS == DEFAULT_BODY_TIMEOUT_MS
    assert get_args(get_args(config.AiProvider)[0]) == PROVIDERS
    assert get_args(get_args(config.AiResponseFormat)[0]) == RESPONSE_FORMATS


def test_load_reads_os_environ_by_default(
    clean_environ: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATEFLEET_POOLS", "3")
    settings = Settings.load()
    assert settings.pools == 3
    assert settings.env["STATEFLEET_POOLS"] == "3"


def test_no_dotenv_file_and_no_implicit_environment(
    clean_environ: None, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    (tmp_path / ".env").write_text("STATEFLEET_POOLS=9\nSTATEFLEET_SHARDS=9\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STATEFLEET_POOLS", "5")
    assert Settings.load({}).pools == 1
    assert Settings.load().shards == (os.cpu_count() or 1)
    # Constructing directly reads nothing either: only ``load`` reads an environment.
    assert Settings().pools == 1


def test_load_is_light() -> None:
    """``statefleet config`` and every command's start pay for no engine, API or Ray."""
    code = (
        "import sys; from statefleet.config import Settings; Settings.load({}); "
        "heavy = {'ray', 'fastapi', 'asyncpg', 'statefleet.engine.runtime', 'statefleet.api'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# --- variables and aliases --------------------------------------------------------


def test_engine_fields_are_exactly_engine_settings() -> None:
    assert list(ENGINE_FIELDS) == [f.name for f in dataclasses.fields(EngineSettings)]


@pytest.mark.parametrize("field", ENGINE_FIELDS)
def test_every_engine_knob_is_read_from_its_variable(field: str) -> None:
    variable = f"STATEFLEET_{field.upper()}"
    engine = Settings.load({variable: "7"}).engine()
    assert getattr(engine, field) == 7
    assert _rows(Settings.load({variable: "7"}))[variable] == ("7", "env")


@pytest.mark.parametrize(
    ("old", "field"),
    [("STATEFLEET_EVENT_BATCH", "event_batch_size"), ("STATEFLEET_TASK_BATCH", "task_batch_size")],
)
def test_older_names_still_work(old: str, field: str) -> None:
    settings = Settings.load({old: "17"})
    assert getattr(settings.engine(), field) == 17
    # Listed under the name that was set, so the row points at the right variable.
    assert _rows(settings)[old] == ("17", "env")
    new = f"STATEFLEET_{field.upper()}"
    assert getattr(Settings.load({old: "17", new: "23"}), field) == 23


def test_task_type_limit() -> None:
    assert Settings.load({"STATEFLEET_TASK_TYPE_LIMIT": "9"}).engine().task_type_limit == 9


def test_values_are_parsed() -> None:
    settings = Settings.load(
        {
            "DATABASE_URL": "postgresql://app@db/app",
            "RAY_ADDRESS": "ray://head:10001",
            "STATEFLEET_RAY_RESOURCES": "WAIT",
            "STATEFLEET_BACKEND": " Local ",
            "STATEFLEET_API_HOST": "0.0.0.0",
            "STATEFLEET_API_PORT": "9000",
            "STATEFLEET_WORKER_HOST": "10.0.0.1",
            "STATEFLEET_WORKER_PORT": "9001",
            "STATEFLEET_HOME": "~/elsewhere",
            "STATEFLEET_PG_ACCOUNT": "pg",
            "STATEFLEET_SHARDS": " 12\n",
        }
    )
    assert settings.database_url == "postgresql://app@db/app"
    assert settings.ray_address == "ray://head:10001"
    assert settings.ray_resources == "wait"
    assert settings.backend == "local"
    assert (settings.api_host, settings.api_port) == ("0.0.0.0", 9000)
    assert (settings.worker_host, settings.worker_port) == ("10.0.0.1", 9001)
    assert settings.home == pathlib.Path.home() / "elsewhere"
    assert settings.pg_account == "pg"
    assert settings.shards == 12


def test_empty_counts_as_unset() -> None:
    env = {
        "DATABASE_URL": "",
        "STATEFLEET_SHARDS": "  ",
        "STATEFLEET_SMTP_HOST": "",
        "STATEFLEET_BACKEND": "",
        "STATEFLEET_AI_PROVIDER": "",
        "WORKFLOW_QUEUE_DRIVER": "",
    }
    settings = Settings.load(env)
    assert settings.database_url is None
    assert settings.shards == (os.cpu_count() or 1)
    assert settings.backend == "ray"
    assert settings.smtp_configured is False
    assert settings.smtp().host == "localhost"
    assert {_rows(settings)[name][1] for name in env} == {"default"}


@pytest.mark.parametrize(
    ("env", "driver"),
    [
        ({}, "memory"),
        ({"REDIS_URL": "redis://r:6379"}, "bullmq"),
        ({"APP_ENV": "production"}, "bullmq"),
        ({"WORKFLOW_QUEUE_DRIVER": " BullMQ ", "REDIS_URL": ""}, "bullmq"),
        ({"WORKFLOW_QUEUE_DRIVER": "memory", "REDIS_URL": "redis://r"}, "memory"),
        (
            {
                "WORKFLOW_QUEUE_DRIVER": "cloudtasks",
                "GOOGLE_CLOUD_PROJECT": "p",
                "WORKFLOW_CLOUDTASKS_LOCATION": "us-central1",
                "WORKFLOW_CLOUDTASKS_TARGET_BASE_URL": "https://worker.example",
            },
            "cloudtasks",
        ),
    ],
)
def test_queue_driver_follows_select_driver(env: dict[str, str], driver: str) -> None:
    from statefleet.drivers.config import select_driver

    settings = Settings.load(env)
    assert settings.queue_driver == driver == select_driver(env)
    source = "env" if env.get("WORKFLOW_QUEUE_DRIVER") else "default"
    assert _rows(settings)["WORKFLOW_QUEUE_DRIVER"] == (driver, source)


def test_cloudtasks_derived_defaults() -> None:
    settings = Settings.load(
        {"APP_ENV": "staging", "WORKFLOW_CLOUDTASKS_TARGET_BASE_URL": "https://w.example"}
    )
    assert settings.cloudtasks_queue_prefix == "staging-"
    assert settings.cloudtasks_oidc_audience == "https://w.example"
    rows = _rows(settings)
    assert rows["WORKFLOW_CLOUDTASKS_QUEUE_PREFIX"] == ("staging-", "default")
    assert rows["WORKFLOW_CLOUDTASKS_OIDC_AUDIENCE"] == ("https://w.example", "default")
    # As the driver reads it: set but empty means "no prefix", even with APP_ENV.
    explicit = Settings.load({"APP_ENV": "staging", "WORKFLOW_CLOUDTASKS_QUEUE_PREFIX": ""})
    assert explicit.cloudtasks_queue_prefix == ""
    assert _rows(explicit)["WORKFLOW_CLOUDTASKS_QUEUE_PREFIX"] == ("", "env")
    audience = Settings.load(
        {
            "WORKFLOW_CLOUDTASKS_TARGET_BASE_URL": "https://w.example",
            "WORKFLOW_CLOUDTASKS_OIDC_AUDIENCE": "https://aud.example",
        }
    )
    assert audience.cloudtasks_oidc_audience == "https://aud.example"


# --- validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "phrase"),
    [
        ("STATEFLEET_SHARDS", "0", "positive integer"),
        ("STATEFLEET_POOLS", "-2", "positive integer"),
        ("STATEFLEET_MAX_RESIDENT", "many", "integer"),
        ("STATEFLEET_IDLE_MS", "1.5", "integer"),
        ("STATEFLEET_SWEEP_EVENT_GRACE_MS", "0", "positive integer"),
        ("STATEFLEET_EVENT_BATCH", "ten", "integer"),
        ("STATEFLEET_TASK_BATCH", "0", "positive integer"),
        ("STATEFLEET_BACKEND", "kubernetes", "'ray' or 'local'"),
        ("STATEFLEET_RAY_RESOURCES", "maybe", "'require', 'wait' or 'off'"),
        ("WORKFLOW_QUEUE_DRIVER", "kafka", "bullmq, cloudtasks, memory"),
        ("STATEFLEET_AI_PROVIDER", "gemini", "'openai' or 'anthropic'"),
        ("STATEFLEET_AI_RESPONSE_FORMAT", "xml", "json_schema"),
        ("STATEFLEET_AI_TIMEOUT_MS", "0", "positive integer"),
        ("STATEFLEET_API_PORT", "70000", "at most 65535"),
        ("STATEFLEET_WORKER_PORT", "http", "integer"),
        ("STATEFLEET_API_MAX_BODY_BYTES", "0", "positive integer"),
        ("STATEFLEET_SMTP_PORT", "0", "positive integer"),
        ("STATEFLEET_SMTP_TLS", "maybe", "boolean"),
        ("STATEFLEET_SMTP_TIMEOUT", "0", "positive number"),
        ("STATEFLEET_SMTP_TIMEOUT", "soon", "number"),
        ("DATABASE_URL", "db:5432", "postgresql://"),
        ("REDIS_URL", "localhost:6379", "redis://"),
    ],
)
def test_each_invalid_value_names_its_variable(variable: str, value: str, phrase: str) -> None:
    (problem,) = _problems({variable: value})
    assert problem.startswith(f"{variable}=")
    assert repr(value) in problem
    assert phrase in problem


def test_every_problem_is_listed_together() -> None:
    env = {
        "STATEFLEET_SHARDS": "0",
        "STATEFLEET_POOLS": "x",
        "WORKFLOW_QUEUE_DRIVER": "kafka",
        "STATEFLEET_AI_PROVIDER": "gemini",
        "STATEFLEET_BACKEND": "k8s",
        "STATEFLEET_SMTP_STARTTLS": "yes",
        "STATEFLEET_SMTP_TLS": "1",
    }
    with pytest.raises(ConfigError) as caught:
        Settings.load(env)
    error = caught.value
    assert isinstance(error, ValueError)
    assert len(error.problems) == len(env) - 1  # the two TLS flags are one problem
    message = str(error)
    assert message.startswith(f"{len(error.problems)} configuration problems:")
    for variable in env:
        assert variable in message


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"WORKFLOW_QUEUE_DRIVER": "cloudtasks", "GOOGLE_CLOUD_PROJECT": "p"},
            "the cloudtasks queue driver needs WORKFLOW_CLOUDTASKS_LOCATION, "
            "WORKFLOW_CLOUDTASKS_TARGET_BASE_URL",
        ),
        (
            {"WORKFLOW_CLOUDTASKS_SERVICE_ACCOUNT": "pusher@p.iam.gserviceaccount.com"},
            "WORKFLOW_CLOUDTASKS_SERVICE_ACCOUNT is set but neither "
            "WORKFLOW_CLOUDTASKS_OIDC_AUDIENCE nor WORKFLOW_CLOUDTASKS_TARGET_BASE_URL is",
        ),
        (
            {"STATEFLEET_SMTP_STARTTLS": "true", "STATEFLEET_SMTP_TLS": "on"},
            "STATEFLEET_SMTP_STARTTLS and STATEFLEET_SMTP_TLS are both on",
        ),
    ],
)
def test_problems_between_variables(env: dict[str, str], expected: str) -> None:
    (problem,) = _problems(env)
    assert problem.startswith(expected)


def test_problems_between_variables_are_listed_with_invalid_values() -> None:
    problems = _problems({"WORKFLOW_QUEUE_DRIVER": "cloudtasks", "STATEFLEET_SHARDS": "0"})
    assert len(problems) == 2
    assert problems[0].startswith("STATEFLEET_SHARDS='0'")
    assert problems[1].startswith("the cloudtasks queue driver needs GOOGLE_CLOUD_PROJECT")


# --- the objects it builds --------------------------------------------------------


def test_smtp() -> None:
    settings = Settings.load(
        {
            "STATEFLEET_SMTP_HOST": "mail.example",
            "STATEFLEET_SMTP_PORT": "587",
            "STATEFLEET_SMTP_USERNAME": "robot",
            "STATEFLEET_SMTP_PASSWORD": "pw",
            "STATEFLEET_SMTP_FROM": "flows@example.com",
            "STATEFLEET_SMTP_STARTTLS": "YES",
            "STATEFLEET_SMTP_TIMEOUT": "2.5",
        }
    )
    assert settings.smtp_configured is True
    assert settings.smtp() == SmtpSettings(
        host="mail.example",
        port=587,
        username="robot",
        password="pw",
        sender="flows@example.com",
        starttls=True,
        use_tls=False,
        timeout_s=2.5,
    )


@pytest.mark.parametrize(
    ("env", "provider", "key"),
    [
        ({"OPENAI_API_KEY": "o", "ANTHROPIC_API_KEY": "a"}, "openai", "o"),
        (
            {
                "STATEFLEET_AI_PROVIDER": "Anthropic",
                "OPENAI_API_KEY": "o",
                "ANTHROPIC_API_KEY": "a",
            },
            "anthropic",
            "a",
        ),
        ({"STATEFLEET_AI_API_KEY": "s", "OPENAI_API_KEY": "o"}, "openai", "s"),
        ({"STATEFLEET_AI_PROVIDER": "anthropic", "OPENAI_API_KEY": "o"}, "anthropic", None),
    ],
)
def test_ai_key_falls_back_to_the_providers_variable(
    env: dict[str, str], provider: str, key: str | None
) -> None:
    ai = Settings.load(env).ai()
    assert (ai.provider, ai.api_key) == (provider, key)


def test_ai() -> None:
    env = {
        "STATEFLEET_AI_BASE_URL": "http://localhost:11434/v1",
        "STATEFLEET_AI_MODEL": "llama3",
        "STATEFLEET_AI_TIMEOUT_MS": "1500",
        "STATEFLEET_AI_RESPONSE_FORMAT": "JSON_OBJECT",
    }
    assert Settings.load(env).ai() == AiSettings(
        base_url="http://localhost:11434/v1",
        model="llama3",
        timeout_ms=1500,
        response_format="json_object",
    )


def test_api_carries_the_raw_environment() -> None:
    env = {
        "DATABASE_URL": "postgresql://u:p@db/app",
        "STATEFLEET_ADMIN_KEY": "adm",
        "STATEFLEET_API_MAX_BODY_BYTES": "1024",
        "WORKFLOW_QUEUE_SECRET": "q",
        "UNRELATED": "kept",
    }
    settings = Settings.load(env)
    api = settings.api()
    assert (api.database_url, api.admin_key, api.max_body_bytes) == (
        "postgresql://u:p@db/app",
        "adm",
        1024,
    )
    assert api.env == env
    # A copy: a caller editing it changes neither the settings nor the next caller's view.
    settings.env["UNRELATED"] = "changed"
    assert settings.env == env


def test_handlers_is_a_picklable_factory_with_these_settings() -> None:
    settings = Settings.load({"STATEFLEET_SMTP_HOST": "mail.example", "STATEFLEET_AI_MODEL": "m"})
    factory = settings.handlers()
    assert isinstance(factory, functools.partial)
    assert factory.args == (settings.smtp(), settings.ai(), (), {})
    clone = pickle.loads(pickle.dumps(factory))
    assert isinstance(clone(), HandlerRegistry)


def test_users_handler_modules_and_settings_travel_in_the_factory() -> None:
    settings = Settings.load(
        {
            "STATEFLEET_HANDLER_MODULES": " shop.handlers , shop.more,",
            "STATEFLEET_HANDLER_ENV": "SHOP_,LEDGER_",
            "SHOP_URL": "http://shop.test",
            "LEDGER_PATH": "/tmp/ledger",
            "OTHER_SECRET": "not for handlers",
        }
    )
    assert settings.handler_modules == ("shop.handlers", "shop.more")
    factory = settings.handlers()
    assert isinstance(factory, functools.partial)
    assert factory.args[2:] == (
        ("shop.handlers", "shop.more"),
        {"LEDGER_PATH": "/tmp/ledger", "SHOP_URL": "http://shop.test"},
    )
    rows = {variable: shown for variable, shown, _ in settings.describe()}
    assert rows["STATEFLEET_HANDLER_MODULES"] == "shop.handlers,shop.more"


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("STATEFLEET_HANDLER_MODULES", "shop-handlers", "'shop-handlers': each item must be"),
        ("STATEFLEET_HANDLER_ENV", "SHOP-", "'SHOP-': each item must be"),
    ],
)
def test_bad_handler_variables_are_named(variable: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        Settings.load({variable: value})
    assert variable in str(raised.value)


# --- describe and masking -------------------------------------------------------------


def test_describe_covers_every_field_once() -> None:
    rows = Settings.load({}).describe()
    assert len(rows) == len(Settings.model_fields)
    assert len({variable for variable, _, _ in rows}) == len(rows)
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]+", variable) for variable, _, _ in rows)


def test_describe_shows_values_and_sources() -> None:
    settings = Settings.load(
        {"STATEFLEET_SHARDS": "8", "STATEFLEET_SMTP_STARTTLS": "1", "STATEFLEET_SMTP_TIMEOUT": "5"}
    )
    rows = _rows(settings)
    assert rows["STATEFLEET_SHARDS"] == ("8", "env")
    assert rows["STATEFLEET_POOLS"] == ("1", "default")
    assert rows["STATEFLEET_SMTP_STARTTLS"] == ("true", "env")
    assert rows["STATEFLEET_SMTP_TLS"] == ("false", "default")
    assert rows["STATEFLEET_SMTP_TIMEOUT"] == ("5", "env")
    assert rows["DATABASE_URL"] == ("", "default")


@pytest.mark.parametrize(
    ("variable", "value", "shown", "secret"),
    [
        (
            "DATABASE_URL",
            "postgresql://app:dsn-pw-1@db:5432/app",
            "postgresql://app:***@db:5432/app",
            "dsn-pw-1",
        ),
        # Unencoded "/" and "@" in the password: hidden whole, not cut at the "/".
        ("DATABASE_URL", "postgres://app:dsn/pw@2@db/app", "postgres://app:***@db/app", "pw@2"),
        (
            "DATABASE_URL",
            "postgresql://app@db/app?sslmode=require&password=dsn-pw-3",
            "postgresql://app@db/app?sslmode=require&password=***",
            "dsn-pw-3",
        ),
        ("DATABASE_URL", "postgresql://app@db/app", "postgresql://app@db/app", None),
        (
            "REDIS_URL",
            "redis://:redis-pw-4@cache:6379/0",
            "redis://:***@cache:6379/0",
            "redis-pw-4",
        ),
        (
            "REDIS_URL",
            "rediss://default:redis-pw-5@cache/0",
            "rediss://default:***@cache/0",
            "redis-pw-5",
        ),
        ("RAY_ADDRESS", "ray://head:10001", "ray://head:10001", None),
    ],
)
def test_passwords_inside_urls_are_masked(
    variable: str, value: str, shown: str, secret: str | None
) -> None:
    settings = Settings.load({variable: value})
    assert _rows(settings)[variable] == (shown, "env")
    if secret is not None:
        assert secret not in repr(settings.describe())
        assert secret not in repr(settings)


def test_every_secret_is_masked_everywhere() -> None:
    env = {
        **SECRETS,
        "DATABASE_URL": "postgresql://app:dsn-password-0008@db/app",
        "REDIS_URL": "redis://:redis-password-0009@cache:6379",
    }
    settings = Settings.load(env)
    rows = _rows(settings)
    for variable in SECRETS:
        assert rows[variable] == ("***", "env")
    shown = f"{settings.describe()!r} {settings!r} {settings!s}"
    for leaked in [*SECRETS.values(), "dsn-password-0008", "redis-password-0009"]:
        assert leaked not in shown
    # The values are still there for the code that needs them.
    assert settings.api().admin_key == "admin-key-0001"
    assert settings.smtp().password == "smtp-password-0003"
    assert settings.ai().api_key == "ai-key-0004"


def test_error_messages_do_not_show_secrets() -> None:
    message = "\n".join(_problems({"DATABASE_URL": "mysql://app:dsn-pw-10@db/app"}))
    assert "dsn-pw-10" not in message
    assert "mysql://app:***@db/app" in message


# --- the documentation ---------------------------------------------------------------


def _documented() -> list[tuple[str, str]]:
    """(variable, default cell) of every table row before the test suite's section."""
    text = DOCS.read_text().split("\n## Test suite", 1)[0]
    return re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \| ([^|]*) \|", text, re.MULTILINE)


def test_docs_list_every_variable_in_describe_order() -> None:
    assert [variable for variable, _ in _documented()] == VARIABLES


def test_docs_defaults_match_the_settings() -> None:
    shown = _rows(Settings.load({}))
    checked = 0
    for variable, default in _documented():
        literal = re.match(r"`([^`]*)`", default.strip())
        if literal is None:  # "(none)", "CPU count", derived defaults
            continue
        assert os.path.expanduser(literal.group(1)) == shown[variable][0], variable
        checked += 1
    assert checked > 40


def test_docs_explain_the_config_command() -> None:
    assert "`statefleet config` prints what a process would run with" in DOCS.read_text()


# --- statefleet config ---------------------------------------------------------------


def _invoke(*args: str, env: dict[str, str]) -> Any:
    return CliRunner().invoke(statefleet, ["config", *args], env=env)


def test_config_command_prints_a_table(clean_environ: None) -> None:
    result = _invoke(env={**SECRETS, "DATABASE_URL": "postgresql://a:dsn-pw@db/a"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["VARIABLE", "VALUE", "SOURCE"]
    assert len(lines) == 1 + len(VARIABLES)
    table = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert table["DATABASE_URL"] == ["postgresql://a:***@db/a", "env"]
    assert table["STATEFLEET_ADMIN_KEY"] == ["***", "env"]
    assert table["RAY_ADDRESS"] == ["-", "default"]
    assert table["STATEFLEET_WORKER_PORT"] == ["8081", "default"]
    for leaked in [*SECRETS.values(), "dsn-pw"]:
        assert leaked not in result.output


def test_config_command_prints_json(clean_environ: None) -> None:
    result = _invoke("--json", env={"STATEFLEET_SHARDS": "3", **SECRETS})
    assert result.exit_code == 0, result.output
    records = orjson.loads(result.output)
    assert [record["variable"] for record in records] == VARIABLES
    by_name = {record["variable"]: record for record in records}
    assert by_name["STATEFLEET_SHARDS"] == {
        "variable": "STATEFLEET_SHARDS",
        "value": "3",
        "source": "env",
    }
    assert by_name["STATEFLEET_API_KEY"]["value"] == "***"
    assert by_name["DATABASE_URL"]["value"] == ""


def test_config_command_exits_1_on_a_bad_value(clean_environ: None) -> None:
    result = _invoke(env={"STATEFLEET_SHARDS": "zero", "STATEFLEET_BACKEND": "k8s"})
    assert result.exit_code == 1
    assert "STATEFLEET_SHARDS='zero': must be an integer" in result.output
    assert "STATEFLEET_BACKEND='k8s'" in result.output
    assert "Traceback" not in result.output


def test_task_handover_limit() -> None:
    assert Settings.load({}).engine().task_handover_limit == 5_000
    assert Settings.load({"STATEFLEET_TASK_HANDOVER_LIMIT": "7"}).engine().task_handover_limit == 7
