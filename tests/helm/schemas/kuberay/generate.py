"""Regenerates ``raycluster_v1.json`` from KubeRay's RayCluster CRD of the pinned version.

The chart tests read the committed JSON file and never run this script (they need no
network). Run it when the chart moves to another KubeRay version::

    python tests/helm/schemas/kuberay/generate.py                 # fetch the pinned chart
    python tests/helm/schemas/kuberay/generate.py --crd FILE.yaml # a CRD you already have
    python tests/helm/schemas/kuberay/generate.py --check         # compare, write nothing

Without ``--crd`` it downloads the ``kuberay-operator`` Helm chart of ``KUBERAY_VERSION``
from KubeRay's chart repository and reads ``crds/ray.io_rayclusters.yaml`` from the
archive (the same file as ``ray-operator/config/crd/bases/ray.io_rayclusters.yaml`` of
the KubeRay tag). The CRD must hash to ``CRD_SHA256`` unless ``--any-version`` is given:
a new version is a deliberate change, made together with the pins below and the chart.

The conversion (see README.md beside this file) turns version ``v1``'s
``openAPIV3Schema`` into a standalone draft-07 JSON Schema. It is written by hand
because no maintained library does these particular steps: generic CRD-to-JSON-Schema
converters (e.g. openapi2jsonschema) leave objects open, which would let a misspelt
field through, and do not drop ``required`` for fields the API server defaults.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import pathlib
import sys
import tarfile
import urllib.request
from typing import Any

import yaml

#: The KubeRay version the Helm chart is tested against (docs/deploy.md).
KUBERAY_VERSION = "1.7.0"
#: sha256 of ``ray.io_rayclusters.yaml`` of that version.
CRD_SHA256 = "c44704442eef0c6721ad40c1d66782c8bd3fdab9d3344306a5820910a679baa1"
CHART_URL = (
    f"https://ray-project.github.io/kuberay-helm/charts/kuberay-operator-{KUBERAY_VERSION}.tgz"
)
CRD_IN_CHART = "kuberay-operator/crds/ray.io_rayclusters.yaml"
API_VERSION = "v1"
HERE = pathlib.Path(__file__).resolve().parent
OUTPUT = HERE / "raycluster_v1.json"


def fetch_crd(url: str = CHART_URL) -> bytes:
    """The RayCluster CRD from the ``kuberay-operator`` chart archive at ``url``."""
    with urllib.request.urlopen(url, timeout=60) as answer:
        archive = answer.read()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as chart:
        member = chart.extractfile(CRD_IN_CHART)
        if member is None:
            raise SystemExit(f"{url} has no {CRD_IN_CHART}")
        return member.read()


def _strict(node: Any) -> Any:
    """Closes objects, turns ``nullable`` into a ``null`` type, unrequires defaulted fields."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items()}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    properties = out.get("properties")
    if isinstance(properties, dict):
        open_object = "additionalProperties" in out or out.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        if not open_object:
            out["additionalProperties"] = False
        required = out.get("required")
        if isinstance(required, list):
            # The API server applies defaults before it validates.
            kept = [name for name in required if "default" not in properties.get(name, {})]
            if kept:
                out["required"] = kept
            else:
                del out["required"]
    return out


def convert(crd_yaml: bytes) -> dict[str, Any]:
    """The standalone JSON Schema of the CRD's ``v1`` version."""
    crd = yaml.safe_load(crd_yaml)
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    (version,) = [v for v in spec["versions"] if v["name"] == API_VERSION]
    schema = _strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["apiVersion"] = {"enum": [f"{group}/{API_VERSION}"], "type": "string"}
    schema["properties"]["kind"] = {"enum": [kind], "type": "string"}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    schema["title"] = f"{kind} ({group}/{API_VERSION})"
    schema["x-kubernetes-group-version-kind"] = [
        {"group": group, "kind": kind, "version": API_VERSION}
    ]
    return schema


def render(schema: dict[str, Any]) -> bytes:
    return (json.dumps(schema, indent=1, sort_keys=True) + "\n").encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crd", type=pathlib.Path, help="read this CRD YAML instead of fetching")
    parser.add_argument("--url", default=CHART_URL, help="the kuberay-operator chart archive")
    parser.add_argument("--any-version", action="store_true", help="accept another CRD hash")
    parser.add_argument("--check", action="store_true", help="compare with the committed file")
    args = parser.parse_args(argv)
    crd_yaml = args.crd.read_bytes() if args.crd else fetch_crd(args.url)
    digest = hashlib.sha256(crd_yaml).hexdigest()
    if digest != CRD_SHA256 and not args.any_version:
        print(f"the CRD's sha256 is {digest}, not KubeRay {KUBERAY_VERSION}'s", file=sys.stderr)
        return 1
    data = render(convert(crd_yaml))
    if args.check:
        same = OUTPUT.read_bytes() == data
        print(f"{OUTPUT.name}: {'up to date' if same else 'differs from the CRD'}")
        return 0 if same else 1
    OUTPUT.write_bytes(data)
    print(f"wrote {OUTPUT} (sha256 {hashlib.sha256(data).hexdigest()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
