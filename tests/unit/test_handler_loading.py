"""Users' handlers: entry points and ``@statefleet.handler`` modules, built per registry.

Real packages on a real ``sys.path``: each test writes a module (and, for entry points,
the ``*.dist-info`` an installer would write) into a temporary folder.
"""

from __future__ import annotations

import asyncio
import pathlib
import pickle
import textwrap
import uuid

import pytest

from statefleet.config import ConfigError, Settings
from statefleet.engine.handlers import HandlerRegistry, TaskContext, check_user_handlers
from statefleet.registries import builtin_registry

HANDLERS = '''
import statefleet
from statefleet.engine.handlers import TaskContext

built = []
closed = []


@statefleet.handler("SHOUT")
async def shout(task: TaskContext):
    return {"text": str(task.input["text"]).upper()}


@statefleet.handler("COUNT")
class Count:
    """Built once per registry with its settings; counts its own calls."""

    def __init__(self, env):
        self.prefix = env.get("SHOP_PREFIX", "")
        self.calls = 0
        built.append(self)

    async def __call__(self, task):
        self.calls += 1
        return {"n": f"{self.prefix}{self.calls}"}

    async def aclose(self):
        closed.append(self)
'''


def task(task_type: str, input: object = None) -> TaskContext:
    return TaskContext(
        tenant_id="acme",
        instance_id=str(uuid.uuid4()),
        task_id=str(uuid.uuid4()),
        task_type=task_type,
        name="t",
        input=input,
        attempt=1,
        max_attempts=1,
        idempotency_key="k",
    )


@pytest.fixture
def module(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, unpackaged module of decorated handlers on ``sys.path``; its name."""
    name = f"shop_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(HANDLERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_decorated_handlers_are_loaded_from_the_named_modules_only(module: str) -> None:
    registry = HandlerRegistry.with_builtins(entry_points_group=None, modules=[module])
    assert {"SHOUT", "COUNT", "NOOP"} <= set(registry)
    shouted = asyncio.run(registry.get("SHOUT")(task("SHOUT", {"text": "hi"})))
    assert shouted == {"text": "HI"}
    # Imported, but not named: nothing of it is registered.
    assert "SHOUT" not in HandlerRegistry.with_builtins(entry_points_group=None)


def test_a_handler_class_is_built_once_per_registry_with_its_settings_and_closed(
    module: str,
) -> None:
    import importlib

    factory = Settings.load(
        {
            "STATEFLEET_HANDLER_MODULES": module,
            "STATEFLEET_HANDLER_ENV": "SHOP_",
            "SHOP_PREFIX": "#",
        }
    ).handlers()
    factory = pickle.loads(pickle.dumps(factory))  # as a pool actor receives it

    async def run() -> list[object]:
        first, second = factory(), factory()  # two executors
        count = first.get("COUNT")
        results = [await count(task("COUNT")), await count(task("COUNT"))]
        results.append(await second.get("COUNT")(task("COUNT")))
        await first.aclose()
        await second.aclose()
        return results

    assert asyncio.run(run()) == [{"n": "#1"}, {"n": "#2"}, {"n": "#1"}]
    loaded = importlib.import_module(module)
    assert len(loaded.built) == 2
    assert loaded.closed == loaded.built


def test_entry_points_name_functions_or_classes(
    module: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = f"test.handlers.{uuid.uuid4().hex[:8]}"
    info = tmp_path / "shop_handlers-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shop-handlers\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            f"""\
            [{group}]
            LOUD = {module}:shout
            TALLY = {module}:Count
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = HandlerRegistry.with_builtins(entry_points_group=group, env={"SHOP_PREFIX": "n"})
    assert asyncio.run(registry.get("LOUD")(task("LOUD", {"text": "a"}))) == {"text": "A"}
    assert asyncio.run(registry.get("TALLY")(task("TALLY"))) == {"n": "n1"}
    assert check_user_handlers([], group) == ["LOUD", "TALLY"]


def test_the_default_factory_loads_the_entry_point_group() -> None:
    """``builtin_registry`` (what every pool builds) reads the real group: nothing here."""
    registry = builtin_registry()
    assert {"NOOP", "EMAIL", "HTTP", "AI"} <= set(registry)


def test_a_missing_module_is_named_before_anything_starts(tmp_path: pathlib.Path) -> None:
    from statefleet.backends import start_backend

    settings = Settings.load(
        {"STATEFLEET_HANDLER_MODULES": "no_such_module_here", "STATEFLEET_BACKEND": "local"}
    )
    with pytest.raises(ImportError, match="handler module 'no_such_module_here'"):
        check_user_handlers(settings.handler_modules)
    with pytest.raises(ConfigError, match=r"no_such_module_here.*STATEFLEET_HANDLER_MODULES"):
        start_backend(settings, "postgresql://unused", pool=None)  # type: ignore[arg-type]


def test_the_decorator_refuses_what_it_cannot_register() -> None:
    import statefleet

    with pytest.raises(ValueError, match="non-empty string"):
        statefleet.handler("")
    with pytest.raises(TypeError, match="decorates a function or class"):
        statefleet.handler("X")(42)


def test_a_handler_class_without_the_env_argument_is_refused_at_the_check(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"shop_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """\
            import statefleet

            @statefleet.handler("BARE")
            class Bare:
                def __init__(self):
                    pass

                async def __call__(self, task):
                    return {}
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match=r"BARE handler class Bare must take one argument"):
        check_user_handlers([name])


def test_a_handler_for_a_manual_task_type_is_refused_at_the_check(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"shop_{uuid.uuid4().hex[:8]}"
    source = (
        'import statefleet\n\n@statefleet.handler("HUMAN")\nasync def h(task):\n    return {}\n'
    )
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match="HUMAN tasks are completed from outside"):
        check_user_handlers([name])
