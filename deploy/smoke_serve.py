"""Start `quorum serve` as the pod does, probe it like the kubelet, then drain it.

Runs the server with the container args of the rendered Deployment (ports moved to free
loopback-reachable ones), waits until the gRPC health service reports SERVING for the
readiness probe's service, sends SIGTERM, and expects the process to exit 0 within
server.grace_period_s plus a margin. Only loopback traffic; bounded in time.

The config is the one the render mounts (its ConfigMap). A config that needs provider
keys or Redis cannot run here: the script then says so and exits 3 (not applicable).

Usage: smoke_serve.py QUORUM_EXECUTABLE RENDERED.yaml
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

START_TIMEOUT_S = 30.0
EXIT_MARGIN_S = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET) as sock:
        sock.bind(("::" if socket.has_ipv6 else "", 0))
        return int(sock.getsockname()[1])


def _pod(rendered: str) -> tuple[list[str], str, str]:
    """The quorum container's args, its readiness service and the config text it mounts."""
    with open(rendered, encoding="utf-8") as handle:
        docs = [d for d in yaml.safe_load_all(handle) if d]
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    for doc in docs:
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "quorum":
            pod = doc["spec"]["template"]["spec"]
            container = next(c for c in pod["containers"] if c["name"] == "quorum")
            service = container["readinessProbe"]["grpc"].get("service", "")
            mounted = [v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v]
            config = configmaps[mounted[0]]["data"]["quorum.yaml"]
            return list(container["args"]), service, config
    raise SystemExit(f"{rendered}: no Deployment/quorum")


def _status(port: int, service: str) -> int:
    with grpc.insecure_channel(f"localhost:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
        return int(reply.status)


def main(argv: list[str]) -> int:
    executable, rendered = argv
    args, service, config_text = _pod(rendered)
    settings = yaml.safe_load(config_text) or {}
    needs = [
        f"providers.{name}.api_key_env"
        for name, p in (settings.get("providers") or {}).items()
        if p.get("api_key_env")
    ] + (["state.redis_url"] if (settings.get("state") or {}).get("redis_url") else [])
    if needs:
        print(f"  not applicable here: the config needs {', '.join(needs)}")
        return 3
    workdir = tempfile.mkdtemp()
    config = f"{workdir}/quorum.yaml"
    with open(config, "w", encoding="utf-8") as handle:
        handle.write(config_text)
    ports: dict[str, int] = {}
    for i, arg in enumerate(args):
        if arg == "--config":
            args[i + 1] = config
        elif arg.endswith("-address") and i + 1 < len(args):
            ports[arg] = _free_port()
            args[i + 1] = f"[::]:{ports[arg]}"
    grace = float((settings.get("server") or {}).get("grace_period_s", 20))
    grpc_port = ports["--address"]

    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(
            [executable, *args], stdout=log, stderr=subprocess.STDOUT, cwd=workdir
        )
        try:
            return _probe_and_drain(proc, grpc_port, service, grace)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.returncode != 0:
                log.seek(0)
                print("  server output (last lines):")
                for line in log.read().strip().splitlines()[-15:]:
                    print(f"    {line}")
            shutil.rmtree(workdir, ignore_errors=True)


def _probe_and_drain(proc: subprocess.Popen[bytes], port: int, service: str, grace: float) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    serving = False
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            serving = _status(port, service) == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            serving = False
        if serving:
            break
        time.sleep(0.2)
    if not serving:
        if proc.poll() is not None:
            print(f"  server exited with {proc.returncode} before reporting SERVING")
        else:
            print(f"  no SERVING for {service!r} within {START_TIMEOUT_S:g} s")
        return 1
    print(f"  SERVING on [::]:{port} (health service {service!r})")
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=grace + EXIT_MARGIN_S)
    except subprocess.TimeoutExpired:
        print(f"  still running {grace + EXIT_MARGIN_S:g} s after SIGTERM")
        return 1
    print(f"  SIGTERM -> exit {code} after {time.monotonic() - started:.1f} s")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
