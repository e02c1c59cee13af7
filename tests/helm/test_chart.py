"""The Helm chart: lint, render with every values file, validate every object offline.

Kubernetes objects are checked against the strict JSON schemas of Kubernetes 1.31
(``kubernetes-validate``), KubeRay objects against the KubeRay v1.7.0 RayCluster schema
in ``tests/helm/schemas/kuberay`` after the API server's own steps (drop nulls, apply
defaults), plus the operator's name-length, replica and group-resource rules. The
rest are assertions on the rendered output: the driver wiring, secrets only by
reference, the memory driver refused, long names cut to size, quoted CPU and
rayStartParams, the Ray resources the groups declare (``statefleet_shard`` /
``statefleet_pool``) and the engine worker's mode, its HTTP probes, Service and
replicas, the Cloud Tasks push target (the worker), and Ray's ports kept private.
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
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from chart_support import CHART, REPO

pytestmark = pytest.mark.timeout(120)

KUBERNETES_VERSION = "1.31"
VALUES_FILES = sorted(p.name for p in (CHART / "ci").glob("*.yaml"))
VALUES_CASES = [None, *VALUES_FILES]
#: The one KubeRay kind the chart renders; any other fails the kind check below.
KUBERAY_KINDS = {"RayCluster": "raycluster_v1.json"}
#: KubeRay's validation.go: name lengths of its objects.
KUBERAY_NAME_LIMITS = {"RayCluster": 53}
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
#: The custom Ray resources the shard and pool actors reserve (actors/factory.py).
SHARD_RESOURCE, POOL_RESOURCE = "statefleet_shard", "statefleet_pool"
#: KubeRay's validation.go: rayStartParams keys refused next to a group's ``resources``.
RAY_START_RESOURCE_PARAMS = {"num-cpus", "num-gpus", "memory", "resources"}
WORKER_PORT = 8081


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


def main_container(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    """The first container of the Deployment of ``component`` (api, worker)."""
    container: dict[str, Any] = one(docs, "Deployment", component)["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


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
    groups = [("head", prepared["spec"]["headGroupSpec"])]
    groups += [(g["groupName"], g) for g in prepared["spec"].get("workerGroupSpecs", [])]
    for name, group in groups:
        params = group.get("rayStartParams") or {}
        if group.get("resources") and RAY_START_RESOURCE_PARAMS & params.keys():
            errors.append(f"{name}: resources in both rayStartParams and the resources field")
        if "labels" in params:
            errors.append(f"{name}: rayStartParams['labels'] is refused; use the labels field")
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
        assert all(isinstance(v, str) for v in group.get("resources", {}).values()), group
        for container in group["template"]["spec"]["containers"]:
            for section in ("requests", "limits"):
                cpu = container["resources"].get(section, {}).get("cpu")
                assert cpu is None or isinstance(cpu, str), container["name"]
    assert cluster["spec"]["rayVersion"] == ray_version_of_pyproject()


@pytest.mark.parametrize("values", VALUES_CASES)
def test_only_the_engine_worker_joins_ray(helm: str, values: str | None) -> None:
    """The worker is a Ray Client driver; the API only enqueues and never joins Ray."""
    docs = render(helm, values)
    api = main_container(docs, "api")
    worker = main_container(docs, "worker")
    head = one(docs, "Service", "ray-head")["metadata"]["name"]
    assert env_of(worker)["RAY_ADDRESS"]["value"] == f"ray://{head}.workflows.svc:10001"
    assert "RAY_ADDRESS" not in env_of(api)
    assert api["args"][0] == "api"
    assert worker["args"] == ["worker"]
    assert {"livenessProbe", "readinessProbe"} <= api.keys()
    assert {"livenessProbe", "readinessProbe", "startupProbe"} <= worker.keys()
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


# --- Ray resources: where the shard and pool actors may run -------------------


def ray_groups(cluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}


def declared(group: dict[str, Any], name: str) -> int:
    """Units of Ray resource ``name`` a node of ``group`` declares (0 when it declares none)."""
    value = group.get("resources", {}).get(name, "0")
    assert re.fullmatch(r"\d+", value), f"{name}: {value!r}"
    return int(value)


@pytest.mark.parametrize("values", VALUES_CASES)
def test_worker_groups_declare_shards_and_pools_and_the_head_none(
    helm: str, values: str | None
) -> None:
    cluster = one(render(helm, values), "RayCluster")
    head = cluster["spec"]["headGroupSpec"]
    assert declared(head, SHARD_RESOURCE) == declared(head, POOL_RESOURCE) == 0
    assert head["resources"]["CPU"] == "0"  # no tasks on the head either
    groups = ray_groups(cluster)
    assert groups
    for name, group in groups.items():
        assert declared(group, SHARD_RESOURCE) >= 1, name
        assert declared(group, POOL_RESOURCE) >= 1, name
        # One place only: KubeRay refuses resource settings in both.
        assert not RAY_START_RESOURCE_PARAMS & group["rayStartParams"].keys(), name


def test_resource_counts_come_from_each_group(helm: str) -> None:
    groups = ray_groups(one(render(helm), "RayCluster"))
    assert groups["workergroup"]["resources"] == {SHARD_RESOURCE: "4", POOL_RESOURCE: "1"}
    groups = ray_groups(one(render(helm, "bullmq-values.yaml"), "RayCluster"))
    assert groups["workergroup"]["resources"] == {
        "CPU": "2",
        SHARD_RESOURCE: "2",
        POOL_RESOURCE: "1",
    }
    # A group without counts of its own takes the worker group's, beside its own resources.
    assert groups["highmem"]["resources"] == {
        "highmem": "1",
        SHARD_RESOURCE: "2",
        POOL_RESOURCE: "1",
    }
    # 0 declares none; the head can be given some.
    docs = render(
        helm,
        "bullmq-values.yaml",
        "--set",
        "additionalWorkerGroups.highmem.statefleetShards=0",
        "--set",
        "additionalWorkerGroups.highmem.statefleetPools=0",
        "--set",
        "head.statefleetPools=1",
    )
    cluster = one(docs, "RayCluster")
    assert ray_groups(cluster)["highmem"]["resources"] == {"highmem": "1"}
    assert cluster["spec"]["headGroupSpec"]["resources"] == {"CPU": "0", POOL_RESOURCE: "1"}


@pytest.mark.parametrize("values", VALUES_CASES)
def test_the_groups_hold_every_shard_and_pool(helm: str, values: str | None) -> None:
    docs = render(helm, values)
    cluster = one(docs, "RayCluster")
    env = env_of(main_container(docs, "worker"))
    autoscaling = cluster["spec"]["enableInTreeAutoscaling"]
    nodes = {
        name: group["maxReplicas"] if autoscaling else group["replicas"]
        for name, group in ray_groups(cluster).items()
    }
    for resource, variable in (
        (SHARD_RESOURCE, "STATEFLEET_SHARDS"),
        (POOL_RESOURCE, "STATEFLEET_POOLS"),
    ):
        room = sum(nodes[name] * declared(g, resource) for name, g in ray_groups(cluster).items())
        assert room >= int(env[variable]["value"]), resource


def test_too_few_declared_resources_are_refused(helm: str) -> None:
    result = run_helm(helm, "template", "demo", str(CHART), "--set", "config.shards=9")
    assert result.returncode != 0
    assert "hold 8 shard actors (statefleetShards x replicas), fewer than config.shards=9" in (
        result.stderr
    )
    bullmq = ("-f", str(CHART / "ci" / "bullmq-values.yaml"))
    result = run_helm(helm, "template", "demo", str(CHART), *bullmq, "--set", "config.pools=12")
    assert result.returncode != 0
    assert "hold 11 pool actors (statefleetPools x maxReplicas" in result.stderr
    # Without reservations the actors go anywhere: nothing to check.
    docs = render(
        helm, None, "--set", "config.shards=9", "--set", "engineWorker.rayResourceMode=off"
    )
    assert env_of(main_container(docs, "worker"))["STATEFLEET_RAY_RESOURCES"]["value"] == "off"


def test_resource_settings_in_ray_start_params_are_refused(helm: str) -> None:
    result = run_helm(
        helm, "template", "demo", str(CHART), "--set-string", "worker.rayStartParams.num-cpus=2"
    )
    assert result.returncode != 0
    assert "worker.rayStartParams.num-cpus: KubeRay refuses resource settings" in result.stderr
    assert "worker.rayResources" in result.stderr
    result = run_helm(
        helm,
        "template",
        "demo",
        str(CHART),
        "--set-string",
        "worker.rayResources.statefleet_shard=3",
    )
    assert result.returncode != 0
    assert "statefleet_shard" in result.stderr


@pytest.mark.parametrize(
    ("extra", "mode"),
    [
        ((), "require"),
        (("--set", "head.enableInTreeAutoscaling=true"), "wait"),
        (("-f", str(CHART / "ci" / "bullmq-values.yaml")), "wait"),
        (("-f", str(CHART / "ci" / "cloudtasks-values.yaml")), "require"),
        (("--set", "engineWorker.rayResourceMode=off"), "off"),
        (
            (
                "--set",
                "head.enableInTreeAutoscaling=true",
                "--set",
                "engineWorker.rayResourceMode=require",
            ),
            "require",
        ),
    ],
)
def test_ray_resource_mode_follows_the_autoscaler(
    helm: str, extra: tuple[str, ...], mode: str
) -> None:
    docs = render(helm, None, *extra)
    env = env_of(main_container(docs, "worker"))
    assert env["STATEFLEET_RAY_RESOURCES"]["value"] == mode
    # Only the engine worker creates actors.
    worker = f"Deployment/{one(docs, 'Deployment', 'worker')['metadata']['name']}/worker"
    setters = [where for where, c in containers(docs) if "STATEFLEET_RAY_RESOURCES" in env_of(c)]
    assert setters == [worker]


def test_unknown_ray_resource_mode_is_refused(helm: str) -> None:
    result = run_helm(
        helm, "template", "demo", str(CHART), "--set", "engineWorker.rayResourceMode=maybe"
    )
    assert result.returncode != 0
    assert "rayResourceMode" in result.stderr


# --- the engine worker: HTTP server, Service, replicas -------------------------


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


@pytest.mark.parametrize("values", VALUES_CASES)
def test_worker_probes_are_http_on_its_own_port(helm: str, values: str | None) -> None:
    worker = main_container(render(helm, values), "worker")
    assert {"name": "http", "containerPort": WORKER_PORT, "protocol": "TCP"} in worker["ports"]
    env = env_of(worker)
    assert env["STATEFLEET_WORKER_HOST"]["value"] == "0.0.0.0"
    assert env["STATEFLEET_WORKER_PORT"]["value"] == str(WORKER_PORT)
    expected = {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for probe, path in expected.items():
        spec = worker[probe]
        assert not {"exec", "tcpSocket", "grpc"} & spec.keys(), probe
        assert spec["httpGet"]["path"] == path, probe
        assert port_number(worker, spec["httpGet"]["port"]) == WORKER_PORT, probe


@pytest.mark.parametrize("values", VALUES_CASES)
def test_worker_service_reaches_the_worker_pods(helm: str, values: str | None) -> None:
    docs = render(helm, values)
    deployment = one(docs, "Deployment", "worker")
    service = one(docs, "Service", "worker")
    assert service["spec"]["type"] == "ClusterIP"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    (port,) = service["spec"]["ports"]
    assert port["name"] == "http"
    worker = deployment["spec"]["template"]["spec"]["containers"][0]
    assert port_number(worker, port["targetPort"]) == WORKER_PORT
    # The API's Service does not select the worker, nor the worker's the API.
    api = one(docs, "Service", "api")["spec"]["selector"]
    assert not api.items() <= labels.items()


def test_several_engine_workers_roll_one_at_a_time(helm: str) -> None:
    docs = render(helm)
    deployment = one(docs, "Deployment", "worker")
    assert deployment["spec"]["replicas"] == 2
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pdb = one(docs, "PodDisruptionBudget", "worker")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert one(render(helm, "bullmq-values.yaml"), "Deployment", "worker")["spec"]["replicas"] == 3
    many = render(helm, None, "--set", "engineWorker.replicas=6")
    assert one(many, "Deployment", "worker")["spec"]["replicas"] == 6


# --- Cloud Tasks pushes to the engine worker ------------------------------------


def routed_service(docs: list[dict[str, Any]], url: str) -> tuple[str, Any]:
    """The Service (name, port) an Ingress routes ``url`` to: the longest matching path."""
    parts = urlsplit(url)
    best: tuple[int, tuple[str, Any]] | None = None
    for ingress in (d for d in docs if d["kind"] == "Ingress"):
        spec = ingress["spec"]
        if parts.scheme == "https":
            tls_hosts = {h for entry in spec.get("tls", []) for h in entry.get("hosts", [])}
            if parts.hostname not in tls_hosts:
                continue
        for rule in spec["rules"]:
            if rule.get("host") != parts.hostname:
                continue
            for path in rule["http"]["paths"]:
                prefix = path["path"].rstrip("/")
                if path["pathType"] == "Exact":
                    matches = parts.path == path["path"]
                else:
                    matches = parts.path == prefix or parts.path.startswith(prefix + "/")
                if matches and (best is None or len(prefix) > best[0]):
                    backend = path["backend"]["service"]
                    best = (len(prefix), (backend["name"], backend["port"]))
    assert best is not None, f"no Ingress routes {url}"
    return best[1]


def test_cloudtasks_pushes_reach_the_engine_worker(helm: str) -> None:
    docs = render(helm, "cloudtasks-values.yaml")
    target = "https://push.workflows.example.com"
    for where, container in engine_containers(docs).items():
        assert env_of(container)["WORKFLOW_CLOUDTASKS_TARGET_BASE_URL"]["value"] == target, where
    worker = one(docs, "Service", "worker")["metadata"]["name"]
    assert routed_service(docs, f"{target}/internal/queues/workflow-orchestrator") == (
        worker,
        {"name": "http"},
    )
    # The worker's ingress exposes the push route only, not its health or metrics.
    ingress = one(docs, "Ingress", "worker")
    paths = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert paths == ["/internal/queues"]
    # The API keeps its own host; its ingress does not route the pushes.
    api = one(docs, "Service", "api")["metadata"]["name"]
    assert routed_service(docs, "https://workflows.example.com/v1/instances")[0] == api


def test_cloudtasks_on_the_apis_host_routes_the_pushes_to_the_worker(helm: str) -> None:
    docs = render(
        helm,
        "cloudtasks-values.yaml",
        "--set",
        "engineWorker.ingress.hosts[0].host=workflows.example.com",
        "--set",
        "engineWorker.ingress.hosts[0].paths[0].path=/internal/queues",
        "--set",
        "engineWorker.ingress.hosts[0].paths[0].pathType=Prefix",
        "--set",
        "engineWorker.ingress.tls[0].secretName=workflows-tls",
        "--set",
        "engineWorker.ingress.tls[0].hosts[0]=workflows.example.com",
        "--set",
        "api.ingress.className=nginx",
        "--set",
        "engineWorker.ingress.className=nginx",
    )
    target = env_of(main_container(docs, "api"))["WORKFLOW_CLOUDTASKS_TARGET_BASE_URL"]["value"]
    assert target == "https://workflows.example.com"
    worker = one(docs, "Service", "worker")["metadata"]["name"]
    api = one(docs, "Service", "api")["metadata"]["name"]
    assert routed_service(docs, f"{target}/internal/queues/task-runner")[0] == worker
    assert routed_service(docs, f"{target}/v1/instances")[0] == api


def test_cloudtasks_target_is_explicit_or_the_workers_ingress(helm: str) -> None:
    base = ("-f", str(CHART / "ci" / "cloudtasks-values.yaml"))
    explicit = "https://push.internal.example.net/base"
    docs = render(
        helm, "cloudtasks-values.yaml", "--set", f"config.cloudTasks.targetBaseUrl={explicit}"
    )
    env = env_of(main_container(docs, "worker"))
    assert env["WORKFLOW_CLOUDTASKS_TARGET_BASE_URL"]["value"] == explicit
    # Neither a URL nor the worker's ingress: refused.
    result = run_helm(
        helm, "template", "demo", str(CHART), *base, "--set", "engineWorker.ingress.enabled=false"
    )
    assert result.returncode != 0
    assert "config.cloudTasks.targetBaseUrl is required" in result.stderr
    assert "engine worker" in result.stderr
    # The API's host without a worker route there: the pushes would reach the API.
    api_host = "config.cloudTasks.targetBaseUrl=https://workflows.example.com"
    no_ingress = "engineWorker.ingress.enabled=false"
    result = run_helm(
        helm, "template", "demo", str(CHART), *base, "--set", no_ingress, "--set", api_host
    )
    assert result.returncode != 0
    assert "is the API's ingress host, but Cloud Tasks must push to the engine worker" in (
        result.stderr
    )


# --- Ray's ports stay private ----------------------------------------------------


@pytest.mark.parametrize("values", VALUES_CASES)
def test_ray_ports_are_never_exposed(helm: str, values: str | None) -> None:
    docs = render(helm, values)
    cluster = one(docs, "RayCluster")
    assert cluster["spec"]["headGroupSpec"]["serviceType"] == "ClusterIP"
    assert not cluster["spec"]["headGroupSpec"].get("enableIngress")
    head = one(docs, "Service", "ray-head")
    assert head["spec"]["type"] == "ClusterIP"
    for doc in docs:
        if doc["kind"] == "Service":
            ports = {p["port"] for p in doc["spec"]["ports"]}
            if ports & {10001, 6379, 8265}:
                assert doc is head, doc["metadata"]["name"]
        if doc["kind"] == "Ingress":
            backends = {
                p["backend"]["service"]["name"]
                for rule in doc["spec"]["rules"]
                for p in rule["http"]["paths"]
            }
            assert head["metadata"]["name"] not in backends


def test_network_policy_is_off_by_default(helm: str) -> None:
    assert not [d for d in render(helm) if d["kind"] == "NetworkPolicy"]


def test_network_policy_admits_only_the_cluster_and_the_engine_worker(helm: str) -> None:
    docs = render(helm, "bullmq-values.yaml")
    cluster = one(docs, "RayCluster")["metadata"]["name"]
    worker_pods = one(docs, "Deployment", "worker")["spec"]["template"]["metadata"]["labels"]
    api_pods = one(docs, "Deployment", "api")["spec"]["template"]["metadata"]["labels"]
    ray = one(docs, "NetworkPolicy", "ray")["spec"]
    assert ray["podSelector"] == {"matchLabels": {"ray.io/cluster": cluster}}
    assert ray["policyTypes"] == ["Ingress"]
    assert ray["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": {"ray.io/cluster": cluster}}}]}
    ]
    head = one(docs, "NetworkPolicy", "ray-head")["spec"]
    assert head["podSelector"]["matchLabels"] == {
        "ray.io/cluster": cluster,
        "ray.io/node-type": "head",
    }
    client, *extra = head["ingress"]
    (peer,) = client["from"]
    assert peer["podSelector"]["matchLabels"].items() <= worker_pods.items()
    assert not peer["podSelector"]["matchLabels"].items() <= api_pods.items()
    assert client["ports"] == [{"port": 10001, "protocol": "TCP"}]
    assert extra == [
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    }
                }
            ],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        }
    ]
    # The policies select the pods KubeRay labels, as the head Service does.
    selector = one(docs, "Service", "ray-head")["spec"]["selector"]
    assert selector == head["podSelector"]["matchLabels"]


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
