"""The Helm chart, rendered offline three ways (defaults, values-production.yaml, every optional
feature on): lint, strict schema validation for two Kubernetes versions, values.schema.json,
the hardening, the drain arithmetic, and the configuration the pods get."""

from __future__ import annotations

import copy
from typing import Any

import helm_python as helm
import pytest

from conftest import (
    ALL_FEATURES, CHART, KUBE_VERSIONS, NAMESPACE, PRODUCTION, assert_hardened, by_kind, config_toml,
    grace_seconds, load_values, one, render, validate_objects,
)

FULLNAME = "demo-arqonbus"


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == "arqonbus"]
    return c


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]


def env_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(objects)["env"]}


def toml_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return config_toml(objects, FULLNAME)


# --- lint and schemas -------------------------------------------------------------------------

@pytest.mark.parametrize("values_file", [None, PRODUCTION, ALL_FEATURES], ids=["default", "production", "all-features"])
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_lint_is_clean(values_file, kube_version):
    values = load_values(values_file) if values_file else None
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{kube_version}")
    assert report["errors"] == []
    # Severity 2 is a warning, 3 an error; 1 (info) is "icon is recommended".
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_default_render_validates(default_objects):
    validate_objects(default_objects)


def test_production_render_validates(production_objects):
    validate_objects(production_objects)


def test_all_features_render_validates(all_features_objects):
    kinds = {o["kind"] for o in all_features_objects}
    assert kinds >= {
        "Deployment", "Service", "ConfigMap", "Secret", "ServiceAccount", "Role", "RoleBinding",
        "Ingress", "HTTPRoute", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
        "ServiceMonitor", "PrometheusRule",
    }
    validate_objects(all_features_objects)


def test_the_validator_catches_an_unknown_field(default_objects):
    # The strict validation that the renders pass is real: a misspelt field fails it.
    broken = copy.deepcopy(one(default_objects, "Deployment", FULLNAME))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(AssertionError, match="readinessProbes"):
        validate_objects([broken])


def test_the_validator_checks_custom_resources(all_features_objects):
    monitor = copy.deepcopy(one(all_features_objects, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["port"] = 8080  # must be a port name
    with pytest.raises(AssertionError, match="port"):
        validate_objects([monitor])


@pytest.mark.parametrize(
    "bad, where",
    [
        ({"replicaCount": "three"}, "/replicaCount"),
        ({"replicaCount": -1}, "/replicaCount"),
        ({"replicas": 3}, "replicas"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"service": {"type": "ExternalName"}}, "/service/type"),
        ({"containerPort": 70000}, "/containerPort"),
        ({"config": {"server": {"drain_delay_ms": "5s"}}}, "/config/server/drain_delay_ms"),
        ({"config": {"server": "0.0.0.0:8080"}}, "/config/server"),
        ({"config": {"cluster": {"kube_membership": "yes"}}}, "/config/cluster/kube_membership"),
        ({"config": {"cluster": {"rebalance_tolerance": -0.1}}}, "/config/cluster/rebalance_tolerance"),
        ({"config": {"cluster": {"kube_service": "Arqonbus_Peers"}}}, "/config/cluster/kube_service"),
        ({"drain": {"marginSeconds": -5}}, "/drain/marginSeconds"),
        ({"autoscaling": {"maxReplicas": "ten"}}, "/autoscaling/maxReplicas"),
        ({"topologySpread": {"zone": {"whenUnsatisfiable": "Sometimes"}}}, "/topologySpread/zone"),
        ({"tracing": {"samplerRatio": 2}}, "/tracing/samplerRatio"),
        ({"tracing": {"otlpEndpoint": "collector:4317"}}, "/tracing/otlpEndpoint"),
        ({"httpRoute": {"timeouts": {"request": "forever"}}}, "/httpRoute/timeouts/request"),
        ({"secrets": {"keys": {"redisURL": "url"}}}, "redisURL"),
    ],
)
def test_schema_refuses_bad_values(bad, where):
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmError) as refused:
            chart.render(values=bad, name="demo", namespace=NAMESPACE)
    assert where in str(refused.value)


def test_schema_accepts_the_shipped_values():
    with helm.Chart.load(CHART) as chart:
        for values in (None, load_values(PRODUCTION), load_values(ALL_FEATURES)):
            chart.validate_schema(values)


# --- hardening --------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", ["default_objects", "production_objects", "all_features_objects"])
def test_pods_are_hardened(fixture, request):
    deployments = by_kind(request.getfixturevalue(fixture), "Deployment")
    assert deployments
    for deployment in deployments:
        assert_hardened(deployment)


def test_gateway_runs_as_the_image_user(default_objects):
    # The image's USER is 65532 (distroless nonroot); the pod asks for the same.
    assert container(default_objects)["securityContext"]["runAsUser"] == 65532
    assert pod_spec(default_objects)["securityContext"]["runAsUser"] == 65532


@pytest.mark.parametrize("fixture", ["default_objects", "production_objects", "all_features_objects"])
def test_probes(fixture, request):
    c = container(request.getfixturevalue(fixture))
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # The startup probe gives a slow start a minute before liveness may restart the pod.
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_no_service_account_token_without_rbac():
    objects = render({"rbac": {"create": False}})
    assert by_kind(objects, "Role") == [] and by_kind(objects, "RoleBinding") == []
    assert pod_spec(objects)["automountServiceAccountToken"] is False
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is False


def test_membership_watches_the_releases_headless_service_and_rebalances(default_objects):
    cluster = config_toml(default_objects, FULLNAME)["cluster"]
    assert cluster["kube_membership"] is True and cluster["rebalance"] is True
    assert cluster["kube_service"] == f"{FULLNAME}-headless"
    assert one(default_objects, "Service", cluster["kube_service"])["spec"]["clusterIP"] == "None"
    assert 0 < cluster["rebalance_tolerance"] < 1 and cluster["rebalance_rate_per_s"] >= 1
    # Set by the user: kept as given.
    own = render({"config": {"cluster": {"kube_service": "elsewhere", "rebalance": False}}})
    cluster = config_toml(own, FULLNAME)["cluster"]
    assert cluster["kube_service"] == "elsewhere" and cluster["rebalance"] is False


def test_membership_is_off_without_rbac_and_cannot_be_forced_on():
    cluster = config_toml(render({"rbac": {"create": False}}), FULLNAME)["cluster"]
    assert cluster["kube_membership"] is False and "kube_service" not in cluster
    with pytest.raises(helm.HelmError, match="kube_membership needs rbac.create"):
        render({"rbac": {"create": False}, "config": {"cluster": {"kube_membership": True}}})


def test_rbac_is_least_privilege(default_objects):
    role = one(default_objects, "Role")
    assert role["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
    ]
    assert by_kind(default_objects, "ClusterRole") == [] and by_kind(default_objects, "ClusterRoleBinding") == []
    binding = one(default_objects, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": FULLNAME}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    assert pod_spec(default_objects)["serviceAccountName"] == FULLNAME


# --- availability -----------------------------------------------------------------------------

def test_pdb_and_spread(production_objects):
    selector = one(production_objects, "Deployment", FULLNAME)["spec"]["selector"]["matchLabels"]
    pdb = one(production_objects, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    spread = {c["topologyKey"]: c for c in pod_spec(production_objects)["topologySpreadConstraints"]}
    assert set(spread) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for c in spread.values():
        assert c["maxSkew"] == 1
        assert c["labelSelector"]["matchLabels"] == selector
        assert c["matchLabelKeys"] == ["pod-template-hash"]
    assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert spread["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "ScheduleAnyway"


def test_pdb_min_available(all_features_objects):
    spec = one(all_features_objects, "PodDisruptionBudget")["spec"]
    assert spec["minAvailable"] == 2 and "maxUnavailable" not in spec


def test_rolling_update_keeps_capacity(default_objects):
    strategy = one(default_objects, "Deployment", FULLNAME)["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def test_hpa_owns_the_replica_count(all_features_objects, production_objects):
    for objects in (all_features_objects, production_objects):
        assert "replicas" not in one(objects, "Deployment", FULLNAME)["spec"]
    hpa = one(all_features_objects, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 9)
    metrics = {m["type"]: m for m in hpa["metrics"]}
    assert metrics["Resource"]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}
    assert metrics["Pods"]["pods"]["metric"]["name"] == "arqonbus_connections"
    assert metrics["Pods"]["pods"]["target"] == {"type": "AverageValue", "averageValue": "4000"}
    # Scale-down drains connections: one pod at a time.
    assert hpa["behavior"]["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 120}]


def test_one_replica_has_no_hpa(default_objects):
    assert by_kind(default_objects, "HorizontalPodAutoscaler") == []
    assert one(default_objects, "Deployment", FULLNAME)["spec"]["replicas"] == 1


# --- drain arithmetic -------------------------------------------------------------------------

def expected_grace(values: dict[str, Any]) -> int:
    server = {"drain_delay_ms": 5000, **values.get("config", {}).get("server", {})}  # chart default 5000
    drain = {"marginSeconds": 5, "preStopSleepSeconds": 0, **values.get("drain", {})}
    return grace_seconds(server, drain["preStopSleepSeconds"], drain["marginSeconds"])


@pytest.mark.parametrize(
    "values, seconds",
    [
        ({}, 20),  # 0 + ceil((5000 + 10000) / 1000) + 5
        ({"config": {"server": {"drain_delay_ms": 0, "shutdown_grace_ms": 1}}}, 6),
        ({"config": {"server": {"drain_delay_ms": 2500, "shutdown_grace_ms": 30001}}}, 38),
        ({"config": {"server": {"drain_delay_ms": 5000, "shutdown_grace_ms": 10000}},
          "drain": {"preStopSleepSeconds": 4, "marginSeconds": 1}}, 20),
        (load_values(PRODUCTION), 25),
        (load_values(ALL_FEATURES), 2 + 20 + 3),  # 2 + ceil(19500 / 1000) + 3
    ],
)
def test_termination_grace_covers_drain_delay_and_grace(values, seconds):
    assert expected_grace(values) == seconds
    pod = pod_spec(render(values))
    assert pod["terminationGracePeriodSeconds"] == seconds


def test_server_defaults_apply_when_the_keys_are_unset():
    # Without the keys the server uses drain_delay_ms = 0 and shutdown_grace_ms = 10000.
    pod = pod_spec(render({"config": {"server": None, "log": {"format": "text"}}}))
    assert pod["terminationGracePeriodSeconds"] == 0 + 10 + 5


def test_chart_sets_a_kubernetes_drain_delay(default_objects):
    # Endpoints need a few seconds to drop a terminating pod: the chart's default waits 5 s.
    assert toml_of(default_objects)["server"]["drain_delay_ms"] == 5000


def test_prestop_sleep_only_when_asked(default_objects, all_features_objects):
    assert "lifecycle" not in container(default_objects)
    assert container(all_features_objects)["lifecycle"] == {"preStop": {"sleep": {"seconds": 2}}}


# --- configuration and environment ------------------------------------------------------------

def test_config_map_is_the_config_values_as_toml():
    config = {
        "server": {"max_connections": 20000, "drain_delay_ms": 3000, "shutdown_grace_ms": 8000},
        "limits": {"publish_rate_per_s": 200, "outbound_queue_bytes": 1048576, "write_timeout_ms": 10000},
        "backplane": {"sentinels": ["s1:26379", "s2:26379"], "username": "arq\"on\\bus", "key_prefix": "bus"},
        "auth": {"kind": "jwt", "jwks_url": "https://login.example.com/.well-known/jwks.json"},
        "channels": {"auto_create": False},
        "http": {"api_keys": [{"name": "ci", "key_sha256": "ab" * 32}]},
        "future": {"nested": {"ratio": 0.25, "big": 123456789012}},
    }
    # The chart's own defaults come along (log, cluster), and it names the headless Service.
    cluster = {**load_values(CHART / "values.yaml")["config"]["cluster"],
               "kube_membership": True, "kube_service": f"{FULLNAME}-headless"}
    assert toml_of(render({"config": config})) == {**config, "log": {"format": "json"}, "cluster": cluster}


def test_chart_owned_environment(default_objects):
    env = env_of(default_objects)
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["ARQONBUS_SERVER__NODE_ID"] == "$(POD_NAME)"
    assert env["ARQONBUS_SERVER__LISTEN"] == "0.0.0.0:8080"
    assert container(default_objects)["args"] == ["serve", "--config", "/etc/arqonbus/arqonbus.toml"]
    # No Redis, no secrets, no tracing by default.
    assert not [k for k in env if k.startswith("OTEL_")]
    assert "ARQONBUS_BACKPLANE__URL" not in env
    assert by_kind(default_objects, "Secret") == []


def test_listen_follows_the_container_port():
    objects = render({"containerPort": 9000})
    assert env_of(objects)["ARQONBUS_SERVER__LISTEN"] == "0.0.0.0:9000"
    assert container(objects)["ports"][0]["containerPort"] == 9000
    assert env_of(render({"config": {"server": {"listen": "[::]:8080"}}}))["ARQONBUS_SERVER__LISTEN"] == "[::]:8080"
    with pytest.raises(helm.HelmError, match="containerPort"):
        render({"config": {"server": {"listen": "0.0.0.0:9999"}}})


def test_existing_secret_feeds_the_secret_variables(production_objects):
    env = env_of(production_objects)
    ref = lambda key: {"secretKeyRef": {"name": "arqonbus-secrets", "key": key}}  # noqa: E731
    assert env["ARQONBUS_BACKPLANE__URL"] == ref("redis-url")
    assert env["ARQONBUS_BACKPLANE__PASSWORD"] == ref("redis-password")
    assert env["ARQONBUS_HTTP__API_KEY"] == ref("api-key")
    assert "ARQONBUS_AUTH__JWT_SECRET" not in env  # JWKS: no shared secret
    assert by_kind(production_objects, "Secret") == []  # the chart creates none
    cfg = toml_of(production_objects)
    assert cfg["auth"]["jwks_url"].startswith("https://") and cfg["backplane"]["username"] == "arqonbus"
    assert "url" not in cfg["backplane"] and "password" not in cfg["backplane"]


def test_trial_secret_only_with_values(all_features_objects):
    secret = one(all_features_objects, "Secret", FULLNAME)
    assert set(secret["data"]) == {"jwt-secret", "api-key"}
    env = env_of(all_features_objects)
    assert env["ARQONBUS_AUTH__JWT_SECRET"] == {"secretKeyRef": {"name": FULLNAME, "key": "jwt-secret"}}
    assert "ARQONBUS_BACKPLANE__PASSWORD" not in env
    annotations = one(all_features_objects, "Deployment", FULLNAME)["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" in annotations and "checksum/config" in annotations


def test_secret_values_and_existing_secret_are_exclusive():
    with pytest.raises(helm.HelmError, match="exclusive"):
        render({"secrets": {"existingSecret": "mine", "values": {"apiKey": "0123456789abcdef"}}})


def test_several_replicas_need_a_shared_backplane():
    with pytest.raises(helm.HelmError, match="shared backplane"):
        render({"replicaCount": 3})
    with pytest.raises(helm.HelmError, match="shared backplane"):
        render({"autoscaling": {"enabled": True}})
    render({"replicaCount": 3, "config": {"backplane": {"url": "redis://redis:6379"}}})
    render({"replicaCount": 3, "secrets": {"existingSecret": "s", "keys": {"redisUrl": "url"}}})


def test_contradictory_values_are_refused():
    shared = {"config": {"backplane": {"url": "redis://redis:6379"}}}
    with pytest.raises(helm.HelmError, match="minReplicas"):
        render({**shared, "autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 3}})
    with pytest.raises(helm.HelmError, match="needs a target"):
        render({**shared, "autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": None}})
    with pytest.raises(helm.HelmError, match="trial Redis"):
        render({"redis": {"enabled": True}, "secrets": {"values": {"redisUrl": "redis://elsewhere:6379"}}})
    with pytest.raises(helm.HelmError, match="unset config.backplane.url"):
        render({"redis": {"enabled": True}, **shared})
    with pytest.raises(helm.HelmError, match="otlpEndpoint"):
        render({"tracing": {"enabled": True}})
    with pytest.raises(helm.HelmError, match="parentRefs"):
        render({"httpRoute": {"enabled": True}})


def test_config_change_rolls_the_pods():
    a = one(render(), "Deployment", FULLNAME)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    b = one(render({"config": {"log": {"level": "debug"}}}), "Deployment", FULLNAME)
    assert b["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != a


def test_tracing_environment(all_features_objects, production_objects):
    env = env_of(all_features_objects)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://api.honeycomb.io:443"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert env["OTEL_SERVICE_NAME"] == "arqonbus-test"
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == (
        "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),deployment.environment=test"
    )
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == {"secretKeyRef": {"name": "honeycomb", "key": "otlp-headers"}}
    names = [e["name"] for e in container(all_features_objects)["env"]]
    # $(POD_NAME) expands only when POD_NAME is defined earlier in the list.
    assert names.index("POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES")
    assert names.index("POD_NAME") < names.index("ARQONBUS_SERVER__NODE_ID")
    assert env_of(production_objects)["OTEL_SERVICE_NAME"] == "arqonbus"


# --- networking -------------------------------------------------------------------------------

def test_services(default_objects):
    selector = one(default_objects, "Deployment", FULLNAME)["spec"]["selector"]["matchLabels"]
    svc = one(default_objects, "Service", FULLNAME)["spec"]
    assert svc["type"] == "ClusterIP" and svc["sessionAffinity"] == "None"
    assert svc["selector"] == selector
    assert svc["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"}]
    headless = one(default_objects, "Service", f"{FULLNAME}-headless")["spec"]
    assert headless["clusterIP"] == "None" and headless["selector"] == selector
    assert headless["publishNotReadyAddresses"] is False


def test_ingress_and_route_keep_websockets_open(all_features_objects):
    ingress = one(all_features_objects, "Ingress")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": FULLNAME, "port": {"name": "http"}}
    route = one(all_features_objects, "HTTPRoute")["spec"]
    assert route["rules"][0]["timeouts"] == {"request": "0s", "backendRequest": "0s"}
    assert route["rules"][0]["backendRefs"] == [{"name": FULLNAME, "port": 8080}]
    assert route["parentRefs"] == [{"name": "public", "namespace": "gateways", "sectionName": "https"}]


def test_load_balancer_service(all_features_objects):
    svc = one(all_features_objects, "Service", FULLNAME)
    assert svc["spec"]["type"] == "LoadBalancer" and svc["spec"]["externalTrafficPolicy"] == "Local"
    assert svc["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-connection-idle-timeout"] == "3600"


def test_network_policy(all_features_objects):
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(all_features_objects, "NetworkPolicy")}
    gateway = policies[FULLNAME]
    assert gateway["policyTypes"] == ["Ingress", "Egress"]
    assert gateway["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    egress_ports = [p["port"] for rule in gateway["egress"] for p in rule.get("ports", [])]
    assert 53 in egress_ports and 6379 in egress_ports and 4317 in egress_ports
    redis = policies[f"{FULLNAME}-redis"]
    assert redis["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"


# --- monitoring -------------------------------------------------------------------------------

def test_service_monitor_scrapes_each_pod_once(all_features_objects):
    monitor = one(all_features_objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}]
    selected = [
        s for s in by_kind(all_features_objects, "Service")
        if all(s["metadata"]["labels"].get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    ]
    assert [s["metadata"]["name"] for s in selected] == [FULLNAME]


def test_alerts(all_features_objects):
    rule = one(all_features_objects, "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) >= {
        "ArqonBusNotReady", "ArqonBusSlowConsumers", "ArqonBusHistoryLost", "ArqonBusUnavailable",
        "ArqonBusConnectionsNearMax", "ArqonBusTargetDown", "ArqonBusManyGapRepairs",
    }
    sel = f'namespace="{NAMESPACE}",job="{FULLNAME}"'
    assert "arqonbus_slow_consumer_disconnects_total{" + sel + "}" in alerts["ArqonBusSlowConsumers"]["expr"]
    assert 'reason="history_lost"' in alerts["ArqonBusHistoryLost"]["expr"]
    assert 'code="UNAVAILABLE"' in alerts["ArqonBusUnavailable"]["expr"]
    # 0.9 × server.max_connections (20000 in this render)
    assert alerts["ArqonBusConnectionsNearMax"]["expr"].endswith("> 18000")
    assert f'pod=~"{FULLNAME}-.*",pod!~"{FULLNAME}-redis-.*"' in alerts["ArqonBusNotReady"]["expr"]


# --- trial Redis ------------------------------------------------------------------------------

def test_trial_redis_is_off_by_default(default_objects, production_objects):
    for objects in (default_objects, production_objects):
        assert [o for o in objects if o["metadata"]["name"].endswith("-redis")] == []


def test_trial_redis_is_marked_and_used(all_features_objects):
    redis = one(all_features_objects, "Deployment", f"{FULLNAME}-redis")
    assert "not-for-production" in str(redis["metadata"]["annotations"])
    assert redis["spec"]["replicas"] == 1
    assert toml_of(all_features_objects)["backplane"]["url"] == f"redis://{FULLNAME}-redis:6379"
    # The gateways' selector does not pick the Redis pod.
    gateway = one(all_features_objects, "Deployment", FULLNAME)["spec"]["selector"]["matchLabels"]
    labels = redis["spec"]["template"]["metadata"]["labels"]
    assert not all(labels.get(k) == v for k, v in gateway.items())


# --- documentation ----------------------------------------------------------------------------

# Values documented as one row, not key by key.
WHOLE = {"config", "resources", "podSecurityContext", "securityContext", "annotations", "labels", "behavior"}


def value_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in values.items():
        if isinstance(value, dict) and value and key not in WHOLE:
            paths.extend(value_paths(value, f"{prefix}{key}."))
        else:
            paths.append(f"{prefix}{key}")
    return paths


def test_readme_lists_every_value():
    readme = (CHART / "README.md").read_text()
    values = load_values(CHART / "values.yaml")
    missing = [p for p in value_paths(values) if f"| `{p}` |" not in readme]
    assert missing == []
    schema = helm.Chart.load(CHART).schema
    assert set(values) <= set(schema["properties"]), "every value is typed by values.schema.json"
