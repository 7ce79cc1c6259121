#!/usr/bin/env bash
# Run every client's tests against one live server: Go, TypeScript, Java, and Python
# (tests/clients, when present).
#
#   1. install what the suites need, idempotently: the codegen tools (scripts/generate.sh
#      --tools-only), Go modules, npm packages (npm ci when the lock file changed), and Maven
#      dependencies (fetched by the Maven build itself; plugins are pinned in the pom);
#   2. start `quorum serve` on a free loopback port and wait until grpc.health.v1 says SERVING;
#   3. run the suites one after another with QUORUM_ADDRESS set, each printing its own output;
#   4. stop the server and print one summary line per suite and a total.
#
# Exits non-zero when any suite fails, or when the server does not start.
# Environment: PYTHON (default .venv/bin/python), QUORUM_BIN (default .venv/bin/quorum),
# SUITES (default "go typescript java python"), QUORUM_START_TIMEOUT (seconds, default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
py=${PYTHON:-$root/.venv/bin/python}
quorum_bin=${QUORUM_BIN:-$root/.venv/bin/quorum}
suites=${SUITES:-go typescript java python}
start_timeout=${QUORUM_START_TIMEOUT:-60}

work=$(mktemp -d)
server_pid=""
started=$SECONDS

log() { printf '\n==> %s\n' "$*"; }
# sha256 of a file, with coreutils or (macOS) perl's shasum.
file_hash() { { sha256sum "$1" 2>/dev/null || shasum -a 256 "$1"; } | cut -d' ' -f1; }

stop_server() {
  [[ -n "$server_pid" ]] || return 0
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do # graceful drain, at most 10 s
      kill -0 "$server_pid" 2>/dev/null || break
      [[ "$(ps -o stat= -p "$server_pid" 2>/dev/null)" == Z* ]] && break
      sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- 1. toolchain dependencies
install_deps() {
  log "dependencies"
  scripts/generate.sh --tools-only
  case " $suites " in *" go "*)
    (cd clients/go && go mod download) ;;
  esac
  case " $suites " in *" typescript "*)
    local want
    want=$(file_hash clients/typescript/package-lock.json)
    if [[ "$(cat clients/typescript/node_modules/.lock-sha256 2>/dev/null)" != "$want" ]]; then
      (cd clients/typescript && npm ci --no-audit --no-fund --loglevel=error)
      printf '%s\n' "$want" >clients/typescript/node_modules/.lock-sha256
    fi ;;
  esac
}

# ---------------------------------------------------------------- 2. the server
free_port() {
  "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_serving() { # address pid timeout
  "$py" - "$@" <<'EOF'
import os
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

address, pid, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])


def alive() -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return not os.path.isdir("/proc/self")  # no procfs: rely on the timeout


deadline = time.monotonic() + timeout
with grpc.insecure_channel(address) as channel:
    health = health_pb2_grpc.HealthStub(channel)
    while time.monotonic() < deadline:
        if not alive():
            sys.exit("server exited before it was serving")
        try:
            reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                sys.exit(0)
        except grpc.RpcError:
            pass
        time.sleep(0.2)
sys.exit(f"server not SERVING within {timeout:.0f}s")
EOF
}

start_server() {
  local port
  port=$(free_port)
  export QUORUM_ADDRESS=127.0.0.1:$port
  log "quorum serve --address $QUORUM_ADDRESS"
  local t0=$SECONDS
  "$quorum_bin" serve --address "$QUORUM_ADDRESS" >"$work/server.log" 2>&1 &
  server_pid=$!
  if ! wait_serving "$QUORUM_ADDRESS" "$server_pid" "$start_timeout"; then
    echo "--- server log (last 50 lines) ---"
    tail -n 50 "$work/server.log"
    exit 1
  fi
  echo "serving after $((SECONDS - t0))s (pid $server_pid)"
}

# ---------------------------------------------------------------- 3. the suites
# Each suite writes its output to $work/<name>.out; count_<runner> turns it into
# "passed failed skipped".
count_go() {
  local out=$1
  printf '%s %s %s\n' "$(grep -cE '^\s*--- PASS' "$out" || true)" \
    "$(grep -cE '^\s*--- FAIL' "$out" || true)" "$(grep -cE '^\s*--- SKIP' "$out" || true)"
}
count_node() {
  local out=$1
  printf '%s %s %s\n' "$(grep -E '^# pass ' "$out" | tail -1 | awk '{print $3}')" \
    "$(grep -E '^# fail ' "$out" | tail -1 | awk '{print $3}')" \
    "$(grep -E '^# skipped ' "$out" | tail -1 | awk '{print $3}')"
}
count_surefire() {
  local line run fail err skip
  line=$(grep -E 'Tests run: [0-9]+, Failures: [0-9]+, Errors: [0-9]+, Skipped: [0-9]+$' "$1" | tail -1 || true)
  read -r run fail err skip < <(sed -E 's/.*Tests run: ([0-9]+), Failures: ([0-9]+), Errors: ([0-9]+), Skipped: ([0-9]+)$/\1 \2 \3 \4/' <<<"$line")
  printf '%s %s %s\n' "$((${run:-0} - ${fail:-0} - ${err:-0} - ${skip:-0}))" "$((${fail:-0} + ${err:-0}))" "${skip:-0}"
}
count_pytest() {
  local line
  line=$(grep -E '[0-9]+ (passed|failed|skipped|error)' "$1" | tail -1 || true)
  num() { grep -oE "[0-9]+ $1" <<<"$line" | awk '{s+=$1} END {print s+0}'; }
  printf '%s %s %s\n' "$(num passed)" "$(($(num failed) + $(num error)))" "$(num skipped)"
}

declare -a summary=()
total_pass=0 total_fail=0 total_skip=0 failed_suites=0

run_suite() { # name counter dir command...
  local name=$1 counter=$2 dir=$3
  shift 3
  log "$name: $*"
  local t0=$SECONDS rc=0
  (cd "$dir" && "$@") 2>&1 | tee "$work/$name.out" || rc=${PIPESTATUS[0]}
  local pass fail skip
  read -r pass fail skip < <("$counter" "$work/$name.out")
  pass=${pass:-0} fail=${fail:-0} skip=${skip:-0}
  if ((rc != 0 && fail == 0)); then
    fail=1 # a build error or crash: count the suite itself as one failure
  fi
  total_pass=$((total_pass + pass)) total_fail=$((total_fail + fail)) total_skip=$((total_skip + skip))
  ((rc == 0)) || failed_suites=$((failed_suites + 1))
  summary+=("$(printf '%-11s %d passed, %d failed, %d skipped  (%ds, exit %d)' "$name:" "$pass" "$fail" "$skip" "$((SECONDS - t0))" "$rc")")
}

run_go() { run_suite go count_go clients/go bash -c 'go vet ./... && go test -count=1 -v ./...'; }
run_typescript() { run_suite typescript count_node clients/typescript npm test --silent; }
run_java() { run_suite java count_surefire clients/java mvn -B -ntp -Dstyle.color=never test; }
run_python() {
  if [[ ! -d tests/clients ]]; then
    summary+=("$(printf '%-11s not run: tests/clients does not exist' "python:")")
    return
  fi
  run_suite python count_pytest "$root" "$root/.venv/bin/pytest" tests/clients -q
}

install_deps
start_server
for suite in $suites; do
  "run_$suite"
done
stop_server

log "client test summary ($((SECONDS - started))s in all)"
printf '%s\n' "${summary[@]}"
printf 'clients: %d passed, %d failed, %d skipped\n' "$total_pass" "$total_fail" "$total_skip"
((failed_suites == 0 && total_fail == 0))
