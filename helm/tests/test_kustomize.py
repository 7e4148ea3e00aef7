"""The plain manifests of k8s/: both overlays build with `kubectl kustomize`, validate strictly
for two Kubernetes versions, keep the chart's hardening and drain arithmetic, and stay the same
deployment as the chart's."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import (
    assert_hardened, by_kind, config_toml, grace_seconds, kustomize_build, one, render, validate_objects,
)

OVERLAYS = {"dev": "arqonbus-dev", "production": "arqonbus"}


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def overlay(request) -> tuple[str, list[dict[str, Any]]]:
    return request.param, kustomize_build(f"overlays/{request.param}")


def deployment(objects):
    return one(objects, "Deployment", "arqonbus")


def gateway(objects):
    (c,) = deployment(objects)["spec"]["template"]["spec"]["containers"]
    return c


def test_overlay_validates(overlay):
    _, objects = overlay
    validate_objects(objects)


def test_overlay_is_namespaced(overlay):
    name, objects = overlay
    namespace = OVERLAYS[name]
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, obj["metadata"]["name"]
    binding = one(objects, "RoleBinding", "arqonbus")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "arqonbus", "namespace": namespace}]
    assert one(objects, "Role", "arqonbus")["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
    ]


def test_overlay_is_hardened(overlay):
    _, objects = overlay
    assert_hardened(deployment(objects))
    pdb = one(objects, "PodDisruptionBudget", "arqonbus")["spec"]
    assert pdb["selector"]["matchLabels"] == deployment(objects)["spec"]["selector"]["matchLabels"]


def test_overlay_grace_matches_its_config(overlay):
    _, objects = overlay
    volumes = {v["name"]: v for v in deployment(objects)["spec"]["template"]["spec"]["volumes"]}
    config_map = volumes["config"]["configMap"]["name"]
    # The generated ConfigMap (name with content hash) is the one mounted.
    assert config_map.startswith("arqonbus-config-") and one(objects, "ConfigMap", config_map)
    server = config_toml(objects, "arqonbus-config")["server"]
    pod = deployment(objects)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == grace_seconds(server)
    assert server["drain_delay_ms"] >= 1000, "endpoints need time to drop a terminating pod"


def test_spread_has_one_constraint_per_topology(overlay):
    _, objects = overlay
    keys = [c["topologyKey"] for c in deployment(objects)["spec"]["template"]["spec"]["topologySpreadConstraints"]]
    assert sorted(keys) == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]


def test_dev_overlay():
    objects = kustomize_build("overlays/dev")
    assert deployment(objects)["spec"]["replicas"] == 1
    assert one(objects, "Namespace")["metadata"]["name"] == "arqonbus-dev"
    config = config_toml(objects, "arqonbus-config")
    assert "backplane" not in config  # embedded backplane: one node
    assert not [e for e in gateway(objects)["env"] if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]]


def test_production_overlay():
    objects = kustomize_build("overlays/production")
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in gateway(objects)["env"]}
    for var, key in [("ARQONBUS_BACKPLANE__URL", "redis-url"), ("ARQONBUS_BACKPLANE__PASSWORD", "redis-password"),
                     ("ARQONBUS_HTTP__API_KEY", "api-key")]:
        assert env[var] == {"secretKeyRef": {"name": "arqonbus-secrets", "key": key}}
    assert gateway(objects)["image"] == "registry.example.com/arqonbus:0.1.0"
    hpa = one(objects, "HorizontalPodAutoscaler", "arqonbus")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "arqonbus" and hpa["minReplicas"] >= 3
    spread = {c["topologyKey"]: c["whenUnsatisfiable"]
              for c in deployment(objects)["spec"]["template"]["spec"]["topologySpreadConstraints"]}
    assert spread == {"kubernetes.io/hostname": "DoNotSchedule", "topology.kubernetes.io/zone": "ScheduleAnyway"}
    assert by_kind(objects, "NetworkPolicy") and by_kind(objects, "Ingress")
    config = config_toml(objects, "arqonbus-config")
    assert config["auth"]["kind"] == "jwt" and config["auth"]["jwks_url"].startswith("https://")
    assert config["backplane"]["username"] == "arqonbus"


def test_base_is_the_charts_default_deployment():
    # k8s/ is "the same deployment as plain manifests": the pod the base runs is the chart's
    # default pod, field for field, except for the names and labels Helm adds.
    base = kustomize_build("base")
    chart = render()
    ours, theirs = gateway(base), one(chart, "Deployment", "demo-arqonbus")["spec"]["template"]["spec"]["containers"][0]
    for field in ("args", "ports", "env", "startupProbe", "livenessProbe", "readinessProbe",
                  "securityContext", "resources", "volumeMounts"):
        assert ours[field] == theirs[field], field
    ours_pod = deployment(base)["spec"]["template"]["spec"]
    theirs_pod = one(chart, "Deployment", "demo-arqonbus")["spec"]["template"]["spec"]
    for field in ("securityContext", "terminationGracePeriodSeconds", "automountServiceAccountToken"):
        assert ours_pod[field] == theirs_pod[field], field
    assert deployment(base)["spec"]["strategy"] == one(chart, "Deployment", "demo-arqonbus")["spec"]["strategy"]
    ours_config, theirs_config = config_toml(base, "arqonbus-config"), config_toml(chart, "demo-arqonbus")
    # Each names its own headless Service (Helm prefixes the release's name).
    assert ours_config["cluster"].pop("kube_service") == "arqonbus-headless"
    assert theirs_config["cluster"].pop("kube_service") == "demo-arqonbus-headless"
    assert ours_config == theirs_config
    strip = lambda spread: [{k: v for k, v in c.items() if k != "labelSelector"} for c in spread]  # noqa: E731
    assert sorted(strip(ours_pod["topologySpreadConstraints"]), key=str) == \
        sorted(strip(theirs_pod["topologySpreadConstraints"]), key=str)


def test_overlay_membership_watches_its_own_headless_service(overlay):
    _, objects = overlay
    cluster = config_toml(objects, "arqonbus-config")["cluster"]
    assert cluster["kube_membership"] is True
    headless = one(objects, "Service", cluster["kube_service"])
    assert headless["spec"]["clusterIP"] == "None"
    # The pods may read that Service's EndpointSlices.
    role = one(objects, "Role")
    assert {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
            "verbs": ["get", "list", "watch"]} in role["rules"]
    assert deployment(objects)["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
