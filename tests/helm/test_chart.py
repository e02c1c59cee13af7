"""The Helm chart: lint, render with every values file, validate every object offline.

Kubernetes objects are checked against the strict JSON schemas of Kubernetes 1.31
(``kubernetes-validate``), KubeRay objects against the KubeRay v1.7.0 CRD schemas in
``shared/schemas/kuberay`` after the API server's own steps (drop nulls, apply
defaults), plus the operator's name-length and replica rules. The rest are
assertions on the rendered output: the driver wiring, secrets only by reference,
the memory driver refused, long names cut to size, quoted CPU and rayStartParams.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from chart_support import CHART, REPO

pytestmark = pytest.mark.timeout(120)

KUBERNETES_VERSION = "1.31"
VALUES_FILES = sorted(p.name for p in (CHART / "ci").glob("*.yaml"))
VALUES_CASES = [None, *VALUES_FILES]
KUBERAY_KINDS = {"RayCluster": "raycluster_v1.json", "RayJob": "rayjob_v1.json"}
KUBERAY_KINDS["RayService"] = "rayservice_v1.json"
#: KubeRay's validation.go: name lengths of its objects.
KUBERAY_NAME_LIMITS = {"RayCluster": 53, "RayJob": 47, "RayService": 47}
#: CRDs outside Kubernetes and KubeRay, checked by hand below.
OTHER_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
SECRET_VARIABLES = {"DATABASE_URL", "REDIS_URL", "WORKFLOW_QUEUE_SECRET", "STATEFLEET_ADMIN_KEY"}
CLOUDTASKS_VARIABLES = {
    "GOOGLE_CLOUD_PROJECT",
    "WORKFLOW_CLOUDTASKS_LOCATION",
    "WORKFLOW_CLOUDTASKS_TARGET_BASE_URL",
    "WORKFLOW_CLOUDTASKS_QUEUE_PREFIX",
    "WORKFLOW_CLOUDTASKS_SERVICE_ACCOUNT",
}
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MEMORY_MESSAGE = "the memory queue driver is refused in Kubernetes"


# --- rendering ----------------------------------------------------------------


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=60, check=False)


@functools.cache
def _render(helm: str, release: str, args: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    result = run_helm(helm, "template", release, str(CHART), "--namespace", "workflows", *args)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(helm: str, values: str | None = None, *extra: str, release: str = "demo") -> list[Any]:
    args = ("-f", str(CHART / "ci" / values)) if values else ()
    return copy.deepcopy(list(_render(helm, release, (*args, *extra))))


def one(docs: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and (
            component is None
            or d["metadata"]["labels"].get("app.kubernetes.io/component") == component
        )
    ]
    assert len(found) == 1, f"{len(found)} {kind} {component or ''}"
    return found[0]


def pod_specs(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = doc.get("spec", {})
    if doc["kind"] == "RayCluster":
        yield spec["headGroupSpec"]["template"]["spec"]
        for group in spec.get("workerGroupSpecs", []):
            yield group["template"]["spec"]
    elif doc["kind"] in {"Deployment", "Job"}:
        yield spec["template"]["spec"]


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        for pod in pod_specs(doc):
            for container in pod["containers"]:
                yield f"{doc['kind']}/{doc['metadata']['name']}/{container['name']}", container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def engine_containers(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every container running the engine (not the migrations hook)."""
    return {
        where: container
        for where, container in containers(docs)
        if not where.startswith("Job/") and "WORKFLOW_QUEUE_DRIVER" in env_of(container)
    }


# --- KubeRay validation as the API server does it -----------------------------


def _allows_null(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "null" or (isinstance(kind, list) and "null" in kind)


def apply_server_defaults(instance: Any, schema: dict[str, Any]) -> Any:
    """Drops nulls of non-nullable fields and fills ``default``s, recursively."""
    if isinstance(instance, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key in list(instance):
            sub = properties.get(key, extra if isinstance(extra, dict) else {})
            if instance[key] is None and not _allows_null(sub):
                del instance[key]
            else:
                instance[key] = apply_server_defaults(instance[key], sub)
        for key, sub in properties.items():
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        return [apply_server_defaults(item, schema["items"]) for item in instance]
    return instance


@functools.cache
def kuberay_schema(path: Path) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(path.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return schema


def kuberay_errors(doc: dict[str, Any], schema_dir: Path) -> list[str]:
    schema = kuberay_schema(schema_dir / KUBERAY_KINDS[doc["kind"]])
    prepared = apply_server_defaults(copy.deepcopy(doc), schema)
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(prepared)
    ]
    name = doc["metadata"]["name"]
    if len(name) > KUBERAY_NAME_LIMITS[doc["kind"]] or not DNS_1035.match(name):
        errors.append(f"metadata/name: {name!r} breaks KubeRay's name rules")
    for group in prepared["spec"].get("workerGroupSpecs", []):
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 2147483647)
        if not low <= group.get("replicas", low) <= high:
            errors.append(f"{group['groupName']}: replicas outside [minReplicas, maxReplicas]")
    return errors


# --- lint, render, validate ----------------------------------------------------


@pytest.mark.parametrize("values", VALUES_CASES)
def test_lint_strict(helm: str, values: str | None) -> None:
    args = ["lint", "--strict", str(CHART)]
    if values:
        args += ["-f", str(CHART / "ci" / values)]
    result = run_helm(helm, *args)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", VALUES_CASES)
def test_every_object_is_valid(
    helm: str, values: str | None, kuberay_schema_dir: Path, kubernetes_validate_module: Any
) -> None:
    docs = render(helm, values)
    assert {d["kind"] for d in docs} >= {"RayCluster", "Deployment", "Service", "Job"}
    problems = []
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["apiVersion"] == "ray.io/v1" and doc["kind"] in KUBERAY_KINDS:
            problems += [f"{where}: {e}" for e in kuberay_errors(doc, kuberay_schema_dir)]
        elif (doc["apiVersion"], doc["kind"]) in OTHER_KINDS:
            assert doc["spec"]["endpoints"][0]["path"] == "/metrics"
        else:
            try:
                kubernetes_validate_module.validate(doc, KUBERNETES_VERSION, strict=True)  # type: ignore[attr-defined]
            except kubernetes_validate_module.ValidationError as exc:  # type: ignore[attr-defined]
                problems.append(f"{where}: {'/'.join(map(str, exc.path))}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_no_ray_v1alpha1_and_no_bundled_crds(helm: str) -> None:
    for values in VALUES_CASES:
        for doc in render(helm, values):
            assert doc["apiVersion"] != "ray.io/v1alpha1"
            assert doc["kind"] != "CustomResourceDefinition"
    assert not (CHART / "crds").exists()


# --- queue drivers and secrets -----------------------------------------------


def test_bullmq_reads_redis_url_from_a_secret(helm: str) -> None:
    engines = engine_containers(render(helm, "bullmq-values.yaml"))
    assert len(engines) >= 4  # API, engine worker, Ray head, Ray worker groups
    for where, container in engines.items():
        env = env_of(container)
        assert env["WORKFLOW_QUEUE_DRIVER"]["value"] == "bullmq", where
        ref = env["REDIS_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "statefleet-redis", "key": "url"}, where
        assert not CLOUDTASKS_VARIABLES & env.keys(), where


def test_cloudtasks_sets_every_variable(helm: str) -> None:
    engines = engine_containers(render(helm, "cloudtasks-values.yaml"))
    assert engines
    for where, container in engines.items():
        env = env_of(container)
        assert env["WORKFLOW_QUEUE_DRIVER"]["value"] == "cloudtasks", where
        assert env.keys() >= CLOUDTASKS_VARIABLES, where
        assert all(env[name]["value"] for name in CLOUDTASKS_VARIABLES), where
        assert env["GOOGLE_CLOUD_PROJECT"]["value"] == "my-gcp-project"
        ref = env["WORKFLOW_QUEUE_SECRET"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "statefleet-queue", "key": "secret"}, where
        assert "REDIS_URL" not in env, where


@pytest.mark.parametrize("values", VALUES_CASES)
def test_secrets_by_reference_only(helm: str, values: str | None) -> None:
    docs = render(helm, values)
    assert not [d for d in docs if d["kind"] == "Secret"]
    seen = set()
    for where, container in containers(docs):
        env = env_of(container)
        assert "DATABASE_URL" in env, where
        for name in SECRET_VARIABLES & env.keys():
            seen.add(name)
            assert "value" not in env[name], f"{where}: {name} inlined"
            assert set(env[name]["valueFrom"]) == {"secretKeyRef"}, where
    assert "DATABASE_URL" in seen


def test_secret_in_extra_env_is_refused(helm: str) -> None:
    result = run_helm(
        helm,
        "template",
        "demo",
        str(CHART),
        "--set-json",
        'config.extraEnv=[{"name":"REDIS_URL","value":"redis://x"}]',
    )
    assert result.returncode != 0
    assert "REDIS_URL is a secret" in result.stderr


@pytest.mark.parametrize("driver", ["memory", "Memory"])
def test_memory_driver_is_refused(helm: str, driver: str) -> None:
    result = run_helm(helm, "template", "demo", str(CHART), "--set", f"config.queueDriver={driver}")
    assert result.returncode != 0
    assert MEMORY_MESSAGE in result.stderr
    assert "process-local" in result.stderr


def test_unknown_driver_and_missing_cloudtasks_settings_are_refused(helm: str) -> None:
    result = run_helm(helm, "template", "demo", str(CHART), "--set", "config.queueDriver=sqs")
    assert result.returncode != 0
    assert "use bullmq or cloudtasks" in result.stderr
    result = run_helm(
        helm, "template", "demo", str(CHART), "--set", "config.queueDriver=cloudtasks"
    )
    assert result.returncode != 0
    assert "config.cloudTasks.project is required" in result.stderr


# --- names, quoting, the rest of the wiring ------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        # Helm refuses release names over 53 characters; the longest one it accepts
        # plus the chart name is 64, one over a DNS label.
        ("--set", "nameOverride=statefleet-engine"),
        ("--set", "fullnameOverride=" + "f" * 60),
        ("--set", "fullnameOverride=9" + "x" * 59),
    ],
)
def test_long_names_stay_within_limits(
    helm: str, extra: tuple[str, ...], kuberay_schema_dir: Path
) -> None:
    docs = render(helm, "bullmq-values.yaml", *extra, release="r" * 53)
    for doc in docs:
        name = doc["metadata"]["name"]
        limit = KUBERAY_NAME_LIMITS.get(doc["kind"], 63)
        assert len(name) <= limit, f"{doc['kind']} {name}"
        assert DNS_1035.match(name), name
        for value in doc["metadata"].get("labels", {}).values():
            assert len(str(value)) <= 63
    cluster = one(docs, "RayCluster")
    assert not kuberay_errors(cluster, kuberay_schema_dir)
    selector = one(docs, "Service", "ray-head")["spec"]["selector"]
    assert selector["ray.io/cluster"] == cluster["metadata"]["name"]


@pytest.mark.parametrize("values", VALUES_CASES)
def test_cpu_and_ray_start_params_are_strings(helm: str, values: str | None) -> None:
    cluster = one(render(helm, values), "RayCluster")
    groups = [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]
    for group in groups:
        assert all(isinstance(v, str) for v in group["rayStartParams"].values()), group
        for container in group["template"]["spec"]["containers"]:
            for section in ("requests", "limits"):
                cpu = container["resources"].get(section, {}).get("cpu")
                assert cpu is None or isinstance(cpu, str), container["name"]
    assert cluster["spec"]["rayVersion"] == ray_version_of_pyproject()


def test_api_and_worker_reach_the_cluster_the_same_way(helm: str) -> None:
    docs = render(helm)
    api = one(docs, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    worker = one(docs, "Deployment", "worker")["spec"]["template"]["spec"]["containers"][0]
    head = one(docs, "Service", "ray-head")["metadata"]["name"]
    address = env_of(api)["RAY_ADDRESS"]["value"]
    assert address == env_of(worker)["RAY_ADDRESS"]["value"]
    assert address == f"ray://{head}.workflows.svc:10001"
    assert api["args"][0] == "api"
    assert worker["args"] == ["worker"]
    assert {"livenessProbe", "readinessProbe"} <= api.keys()
    assert {"livenessProbe", "startupProbe"} <= worker.keys()
    cluster = one(docs, "RayCluster")
    for pod in pod_specs(cluster):
        assert "RAY_ADDRESS" not in env_of(pod["containers"][0])


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook(helm: str) -> None:
    job = one(render(helm), "Job", "migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["migrate"]
    assert "secretKeyRef" in env_of(container)["DATABASE_URL"]["valueFrom"]


@pytest.mark.parametrize("values", VALUES_CASES)
def test_pods_run_as_non_root_on_a_read_only_root(helm: str, values: str | None) -> None:
    docs = render(helm, values)
    for doc in docs:
        for pod in pod_specs(doc):
            assert pod["securityContext"]["runAsNonRoot"] is True
            for container in pod["containers"]:
                context = container["securityContext"]
                assert context["readOnlyRootFilesystem"] is True
                assert context["allowPrivilegeEscalation"] is False
                mounts = {m["mountPath"] for m in container["volumeMounts"]}
                assert "/tmp" in mounts


def test_autoscaling_and_worker_groups(helm: str) -> None:
    cluster = one(render(helm, "bullmq-values.yaml"), "RayCluster")
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["upscalingMode"] == "Conservative"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"workergroup", "highmem"}  # smallGroup stays disabled
    assert (groups["workergroup"]["minReplicas"], groups["workergroup"]["maxReplicas"]) == (1, 8)


# --- the image ----------------------------------------------------------------


def ray_version_of_pyproject() -> str:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(d for d in dependencies if re.match(r"ray\b", d))
    match = re.fullmatch(r"ray\s*>=\s*(\d+)\.(\d+)(?:\.(\d+))?", pin)
    assert match, pin
    return f"{match[1]}.{match[2]}.{match[3] or 0}"


def test_dockerfile_uses_the_pinned_ray_image_and_a_non_root_user() -> None:
    dockerfile = (REPO / "helm" / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", dockerfile, flags=re.MULTILINE))
    images = [
        re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], image)
        for image in re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    ]
    assert images[-1] == f"rayproject/ray:{ray_version_of_pyproject()}-py311", images
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users, "no USER line"
    assert users[-1] not in {"root", "0"}, users
    assert re.search(r"^ENTRYPOINT\s+\[\"statefleet\"\]", dockerfile, flags=re.MULTILINE)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["rayVersion"] == ray_version_of_pyproject()
