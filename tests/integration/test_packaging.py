"""The distribution installs as users get it: a wheel in a fresh venv imports every subpackage.

The repository maps ``engine/``, ``actors/`` and ``drivers/`` into the
``statefleet`` namespace through setuptools' ``package-dir``; a subpackage
missing from ``pyproject.toml`` would work in an editable install and vanish
from the wheel, so this test builds the real wheel.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import venv
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FOLDERS = {
    "statefleet": "statefleet",
    "engine": "statefleet.engine",
    "actors": "statefleet.actors",
    "drivers": "statefleet.drivers",
}


def source_packages() -> list[str]:
    names = []
    for folder, prefix in FOLDERS.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            relative = init.parent.relative_to(ROOT / folder)
            names.append(".".join([prefix, *relative.parts]))
    return names


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_imports_every_subpackage(tmp_path: pathlib.Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(dist),
            str(ROOT),
        ],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = dist.glob("statefleet-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "statefleet/engine/interpreter/machine.py" in names
    assert "statefleet/engine/py.typed" in names
    # The web console ships whole (page, app modules, styles, the vendored Mermaid build
    # and its version record), so `pip install` alone serves /ui/ with no Node and no CDN.
    console = ROOT / "statefleet" / "console"
    shipped = {
        f"statefleet/console/{p.relative_to(console).as_posix()}"
        for p in console.rglob("*")
        if p.is_file()
    }
    assert "statefleet/console/assets/vendor/mermaid.min.js" in shipped
    assert shipped <= set(names), shipped - set(names)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, cwd=tmp_path
    )
    packages = source_packages()
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(python), "-c", script, *packages],
        cwd=tmp_path,
        env=clean_env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    served = subprocess.run(
        [
            str(python),
            "-c",
            "from statefleet.api.console import CONSOLE_DIR\n"
            "print((CONSOLE_DIR / 'assets' / 'vendor' / 'mermaid.min.js').stat().st_size)",
        ],
        cwd=tmp_path,
        env=clean_env,
        capture_output=True,
        text=True,
    )
    assert served.returncode == 0, served.stderr
    assert int(served.stdout) > 1_000_000
    cli = subprocess.run(
        [str(env_dir / "bin" / "statefleet"), "--help"], capture_output=True, text=True
    )
    assert cli.returncode == 0, cli.stderr
    assert "simulate" in cli.stdout


def test_pyproject_lists_every_source_package() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    assert set(source_packages()) == listed
