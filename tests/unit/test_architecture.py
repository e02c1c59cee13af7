"""Arrows point toward the core: ``engine/`` imports neither actors, drivers nor the front door."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
FORBIDDEN = ("statefleet.actors", "statefleet.drivers", "ray", "redis", "bullmq", "click")


def _imports(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def test_engine_depends_on_nothing_outside_the_core() -> None:
    offenders = []
    for path in sorted((ROOT / "engine").rglob("*.py")):
        for name in _imports(path):
            front_door = name.startswith("statefleet") and not name.startswith("statefleet.engine")
            if front_door or any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_interpreter_is_pure() -> None:
    """No clock, randomness, I/O or asyncio inside the interpreter."""
    impure = ("time", "datetime", "random", "asyncio", "os", "socket", "uuid")
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "engine" / "interpreter").rglob("*.py"))
        for name in _imports(path)
        if name.split(".")[0] in impure
    ]
    assert offenders == []


def test_public_names_are_exported_once() -> None:
    """Every package lists its public names once, and each exists.

    Their order is ruff's (RUF022: an isort-style sort), checked by ``make lint``.
    """
    import importlib

    for module_name in (
        "statefleet.engine.interpreter",
        "statefleet.engine.spec",
        "statefleet.engine.ports",
        "statefleet.engine.handlers",
        "statefleet.engine.runtime",
        "statefleet.engine.store",
        "statefleet.actors",
        "statefleet.drivers",
    ):
        module = importlib.import_module(module_name)
        names = list(module.__all__)
        assert len(names) == len(set(names)), module_name
        for name in names:
            assert hasattr(module, name), f"{module_name}.{name}"


def test_interpreter_public_surface_is_pinned() -> None:
    from statefleet.engine import interpreter

    assert set(interpreter.__all__) == {
        "CancelTask",
        "CancelTimer",
        "CreateTask",
        "Effect",
        "Event",
        "Machine",
        "ScheduleTimer",
        "Snapshot",
        "Status",
        "Step",
        "load_machine",
        "make_event",
    }
