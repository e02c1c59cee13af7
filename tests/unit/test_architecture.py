"""The layer matrix, checked on every import statement of the package.

Arrows point toward the core::

    front door (statefleet/*)  ->  engine  <-  actors / drivers

``engine/`` imports neither the actors, the drivers nor the front door; the actors and
the drivers import the engine (its ports) but not each other nor the front door. The
engine talks to the outside world only through its adapter modules: the database driver
behind ``engine/store``, the SMTP/HTTP clients behind the built-in handlers, the model
SDKs behind the AI handler; everywhere else it uses the ports those adapters fill.
"""

from __future__ import annotations

import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]

#: Folder -> the package it is installed as (pyproject.toml's package-dir).
LAYERS = {
    "statefleet": "statefleet",
    "engine": "statefleet.engine",
    "actors": "statefleet.actors",
    "drivers": "statefleet.drivers",
}

#: What each layer may import from the package (besides itself).
ALLOWED_LAYERS = {
    "statefleet.engine": (),
    "statefleet.actors": ("statefleet.engine",),
    "statefleet.drivers": ("statefleet.engine",),
}

#: Third-party libraries the engine may use anywhere: data, not I/O.
ENGINE_LIBRARIES = frozenset({"orjson", "pydantic", "pydantic_core"})

#: Every other third-party import of the engine, and the adapter modules allowed to make it.
ENGINE_ADAPTERS = {
    "asyncpg": {"engine/store/db.py", "engine/store/migrate.py"},
    "aiosmtplib": {"engine/handlers/builtin.py", "engine/handlers/smtp.py"},
    "httpx": {"engine/handlers/builtin.py"},
    "openai": {"engine/handlers/ai.py"},
    "anthropic": {"engine/handlers/ai.py"},
    "cel_expr_python": {"engine/cel.py"},
    "pythonjsonlogger": {"engine/logging_setup.py"},
    "cronsim": {"engine/runtime/cron.py"},
    "opentelemetry": {"engine/tracing.py"},
}


def _module_of(path: pathlib.Path) -> str:
    relative = path.relative_to(ROOT)
    parts = [LAYERS[relative.parts[0]], *relative.with_suffix("").parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: pathlib.Path) -> list[str]:
    """Every module ``path`` imports (in functions too), relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_of(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                assert node.module is not None
                found.append(node.module)
                continue
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            found.append(".".join([*base, *([node.module] if node.module else [])]))
    return found


def _files(folder: str) -> list[pathlib.Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def _layer_of(name: str) -> str | None:
    """The layer ``name`` belongs to; None for libraries and for the bare root package,
    which holds only ``__version__`` (the actors name themselves after it)."""
    if name == "statefleet":
        return None
    for layer in ("statefleet.engine", "statefleet.actors", "statefleet.drivers"):
        if name == layer or name.startswith(layer + "."):
            return layer
    if name.startswith("statefleet."):
        return "statefleet"
    return None


def _third_party(name: str) -> str | None:
    top = name.split(".")[0]
    if top in sys.stdlib_module_names or top in ("__future__", "statefleet"):
        return None
    return top


def test_the_helpers_see_what_they_must() -> None:
    """The checks below are only as good as the import reader: it must see every form."""
    sample = ROOT / "drivers" / "config.py"
    assert _module_of(sample) == "statefleet.drivers.config"
    assert _module_of(ROOT / "engine" / "runtime" / "__init__.py") == "statefleet.engine.runtime"
    imports = {name for path in _files("actors") for name in _imports(path)}
    assert "ray" in imports
    assert any(_layer_of(name) == "statefleet.engine" for name in imports)
    assert _layer_of("statefleet.config") == "statefleet"
    front = {name for path in _files("statefleet") for name in _imports(path)}
    assert {_layer_of(n) for n in front} >= {"statefleet.actors", "statefleet.drivers"}


def test_each_layer_imports_only_the_layers_below_it() -> None:
    offenders = []
    for folder, layer in LAYERS.items():
        if layer == "statefleet":
            continue  # the front door may use every layer
        allowed = (layer, *ALLOWED_LAYERS[layer])
        for path in _files(folder):
            for name in _imports(path):
                target = _layer_of(name)
                if target is not None and target not in allowed:
                    offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_the_engine_reaches_outside_only_through_its_adapters() -> None:
    offenders = []
    for path in _files("engine"):
        where = path.relative_to(ROOT).as_posix()
        for name in _imports(path):
            library = _third_party(name)
            if library is None or library in ENGINE_LIBRARIES:
                continue
            if where not in ENGINE_ADAPTERS.get(library, set()):
                offenders.append(f"{where} imports {name}")
    assert offenders == []


def test_the_named_adapters_exist_and_use_their_library() -> None:
    """A stale allowance would hide nothing today but permit anything tomorrow."""
    for library, modules in ENGINE_ADAPTERS.items():
        for module in modules:
            names = {_third_party(n) for n in _imports(ROOT / module)}
            assert library in names, f"{module} no longer imports {library}"


def test_interpreter_is_pure() -> None:
    """No clock, randomness, I/O or asyncio inside the interpreter."""
    impure = ("time", "datetime", "random", "asyncio", "os", "socket", "uuid")
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _files("engine/interpreter")
        for name in _imports(path)
        if name.split(".")[0] in impure or _third_party(name) not in (None, "cel_expr_python")
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
