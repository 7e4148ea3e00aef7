"""The container image without a container engine: the Dockerfile is linted with hadolint and
keeps its promises (distroless, fixed non-root UID, no shell needed, no HEALTHCHECK), and the
binary it ships — built and stripped by scripts/test-deploy.sh with the Dockerfile's own
commands — starts with the configuration the chart and the overlays give the pods, and drains
as the chart's arithmetic assumes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import (
    ALL_FEATURES, CHART, PRODUCTION, REPO, config_toml, kustomize_build, load_values, one, render,
)

DOCKERFILE = REPO / "Dockerfile"
POD_NAME = "demo-arqonbus-7c9d8f6b5d-x2x7q"
SAMPLE_SECRETS = {
    "ARQONBUS_BACKPLANE__URL": "rediss://redis.example.com:6379",
    "ARQONBUS_BACKPLANE__PASSWORD": "sample-password",
    "ARQONBUS_AUTH__JWT_SECRET": "0123456789abcdef0123456789abcdef",
    "ARQONBUS_HTTP__API_KEY": "sample-api-key-0123456789",
}


def binary() -> Path:
    path = os.environ.get("IMAGE_BINARY")
    assert path, "IMAGE_BINARY is not set (scripts/test-deploy.sh builds the image's binary)"
    return Path(path)


def stages() -> list[list[str]]:
    """The Dockerfile's instructions, grouped by stage (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        if result:
            result[-1].append(line)
    return result


# --- the Dockerfile ---------------------------------------------------------------------------

def test_hadolint_is_clean():
    hadolint = os.environ.get("HADOLINT", "hadolint")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_runtime_stage_is_minimal_and_non_root():
    runtime = stages()[-1]
    assert re.match(r"FROM gcr\.io/distroless/cc-debian12:nonroot AS runtime$", runtime[0])
    assert "USER 65532:65532" in runtime, "a fixed numeric UID, so runAsNonRoot can verify it"
    assert not [i for i in runtime if i.upper().startswith(("RUN ", "SHELL "))], "no shell in the runtime image"
    assert 'ENTRYPOINT ["/usr/local/bin/arqonbus"]' in runtime and 'CMD ["serve"]' in runtime
    assert not [i for s in stages() for i in s if i.upper().startswith("HEALTHCHECK")]
    assert "COPY --from=build /out/arqonbus /usr/local/bin/arqonbus" in runtime


def test_build_stage_caches_dependencies_and_builds_like_the_test_build():
    build = " ".join(stages()[0])
    # Dependencies first (only the manifest and lock file copied), then the sources.
    assert build.index("COPY Cargo.toml Cargo.lock ./") < build.index("COPY src ./src")
    assert build.count("cargo build --release --locked --bin arqonbus") == 2
    # The release profile leaves the debug info out: nothing to strip after the build.
    assert "objcopy" not in build and "strip" not in build
    # The command scripts/test-deploy.sh runs to make IMAGE_BINARY, word for word.
    script = (REPO / "scripts" / "test-deploy.sh").read_text()
    assert "cargo build --release --locked --bin arqonbus" in script
    assert "cp target/release/arqonbus" in build and "cp target/release/arqonbus" in script


def test_release_profile_ships_symbols_without_debug_info_and_profiling_keeps_it():
    cargo = (REPO / "Cargo.toml").read_text()
    release = cargo.split("[profile.release]")[1].split("\n[")[0]
    assert 'strip = "debuginfo"' in release and "debug = 1" not in release
    profiling = cargo.split("[profile.profiling]")[1].split("\n[")[0]
    assert 'inherits = "release"' in profiling and "debug = 1" in profiling
    # The image's profiling target builds that profile.
    assert any("cargo build --profile profiling" in " ".join(s) for s in stages())


def test_dockerignore_sends_only_the_sources():
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines == ["*", "!Cargo.toml", "!Cargo.lock", "!src/", "!bench/Cargo.toml", "!bench/src/"]


def test_chart_and_image_agree():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    cargo = (REPO / "Cargo.toml").read_text()
    assert f'version = "{chart["appVersion"]}"' in cargo, "appVersion is the crate's version"
    assert "EXPOSE 8080" in stages()[-1]


# --- the binary the image ships ---------------------------------------------------------------

def test_shipped_binary_is_small_and_keeps_its_symbols():
    path = binary()
    assert path.stat().st_size < 25 * 1024 * 1024, f"{path.stat().st_size} bytes"
    sections = subprocess.run(["readelf", "-S", "-W", str(path)], check=True, capture_output=True, text=True).stdout
    assert ".debug_info" not in sections and ".symtab" in sections
    # Profilers name functions from the symbol table.
    symbols = subprocess.run(["readelf", "-s", "-W", str(path)], check=True, capture_output=True, text=True).stdout
    assert "serve" in symbols and "arqonbus" in symbols
    version = subprocess.run([str(path), "--version"], check=True, capture_output=True, text=True, timeout=10).stdout
    assert version.strip() == f"arqonbus {yaml.safe_load((CHART / 'Chart.yaml').read_text())['appVersion']}"


def pod_environment(container: dict[str, Any]) -> dict[str, str]:
    """The environment the kubelet would give the container (secrets: sample values)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = e["value"].replace("$(POD_NAME)", POD_NAME).replace("$(POD_NAMESPACE)", "bus")
        elif "fieldRef" in e["valueFrom"]:
            env[e["name"]] = {"metadata.name": POD_NAME, "metadata.namespace": "bus"}[e["valueFrom"]["fieldRef"]["fieldPath"]]
        elif e["name"] in SAMPLE_SECRETS:
            env[e["name"]] = SAMPLE_SECRETS[e["name"]]
    return env


def run_config(toml: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    config = tmp_path / "arqonbus.toml"
    config.write_text(toml)
    return subprocess.run([str(binary()), "config", "--config", str(config)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=20)


def pods() -> dict[str, tuple[str, dict[str, Any]]]:
    """The config file and container of every deployment this repository describes."""
    out = {}
    for name, values in [("chart-default", None), ("chart-production", load_values(PRODUCTION)),
                         ("chart-all-features", load_values(ALL_FEATURES))]:
        objects = render(values)
        container = one(objects, "Deployment", "demo-arqonbus")["spec"]["template"]["spec"]["containers"][0]
        cm = one(objects, "ConfigMap", "demo-arqonbus")
        out[name] = (cm["data"]["arqonbus.toml"], container)
    for overlay in ("dev", "production"):
        objects = kustomize_build(f"overlays/{overlay}")
        container = one(objects, "Deployment", "arqonbus")["spec"]["template"]["spec"]["containers"][0]
        cm = [o for o in objects if o["kind"] == "ConfigMap"][0]
        out[f"kustomize-{overlay}"] = (cm["data"]["arqonbus.toml"], container)
    return out


PODS = pods()


@pytest.mark.parametrize("name", sorted(PODS))
def test_binary_accepts_the_pods_configuration(name, tmp_path):
    toml, container = PODS[name]
    env = pod_environment(container)
    result = run_config(toml, env, tmp_path)
    if result.returncode != 0 and "jwks_url" in result.stderr:
        # The production examples use JWKS (auth.jwks_url, issue 7). Until this binary knows the
        # key, prove that the rest of the file is valid: the same file with an HS256 secret.
        assert result.returncode == 64 and "unknown field" in result.stderr, result.stderr
        toml = re.sub(r'^jwks_url = .*$', "", toml, flags=re.M)
        result = run_config(toml, {**env, "ARQONBUS_AUTH__JWT_SECRET": SAMPLE_SECRETS["ARQONBUS_AUTH__JWT_SECRET"]}, tmp_path)
    assert result.returncode == 0, result.stderr
    resolved = result.stdout
    assert 'listen = "0.0.0.0:8080"' in resolved
    assert f'node_id = "{POD_NAME}"' in resolved
    assert "sample-password" not in resolved and "sample-api-key" not in resolved  # masked


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_sigterm_turns_unready_first_then_exits_within_the_grace_period(tmp_path):
    """What the chart relies on instead of a preStop hook: after SIGTERM the node answers 503 on
    /readyz at once, keeps serving for drain_delay_ms, and exits well inside
    terminationGracePeriodSeconds; it writes no file (read-only root filesystem)."""
    objects = render()
    server = config_toml(objects, "demo-arqonbus")["server"]
    grace = one(objects, "Deployment", "demo-arqonbus")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    config = tmp_path / "etc" / "arqonbus.toml"
    config.parent.mkdir()
    config.write_text(one(objects, "ConfigMap", "demo-arqonbus")["data"]["arqonbus.toml"])
    workdir = tmp_path / "work"
    workdir.mkdir()
    port = free_port()
    # No Kubernetes API here: membership off (the watch is tested over a mocked API in
    # src/cluster, and its refusal to start outside Kubernetes in integration/rollout.rs).
    env = {"PATH": "/usr/bin:/bin", "ARQONBUS_SERVER__LISTEN": f"127.0.0.1:{port}",
           "ARQONBUS_SERVER__NODE_ID": POD_NAME, "ARQONBUS_LOG__LEVEL": "warn",
           "ARQONBUS_CLUSTER__KUBE_MEMBERSHIP": "false"}
    proc = subprocess.Popen([str(binary()), "serve", "--config", str(config)], env=env, cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if get(f"{base}/readyz") == 200:
                    break
            except OSError:
                time.sleep(0.05)
        assert get(f"{base}/readyz") == 200 and get(f"{base}/healthz") == 200
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert get(f"{base}/readyz") == 503, "unready at once"
        assert get(f"{base}/healthz") == 200, "still alive while endpoints update"
        assert proc.poll() is None
        code = proc.wait(timeout=grace)
        took = time.monotonic() - sent
        assert code == 0, proc.stderr.read()
        delay = server["drain_delay_ms"] / 1000
        assert delay - 0.2 <= took < grace, f"exited after {took:.1f} s (drain delay {delay} s, grace {grace} s)"
        assert list(workdir.iterdir()) == [], "the server wrote files"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
