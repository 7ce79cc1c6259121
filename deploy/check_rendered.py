"""Check rules that tie Quorum's rendered manifests to its config and its server.

Schema validation and checkov look at one object at a time. These rules span objects:

- the pod's termination grace period outlasts the preStop sleep plus the config's
  ``server.grace_period_s``, so a drain is never cut short by SIGKILL;
- the gRPC probes dial the numeric port the server listens on (``--address``);
- the readiness probe asks for the RouteService, and the headless Service publishes
  only ready pods;
- the config ConfigMap the pod mounts is part of the same render;
- more than one replica (fixed, or allowed by an autoscaler) needs ``state.redis_url``,
  or breakers and budgets would be counted per replica.

Usage: check_rendered.py RENDERED.yaml [--single-template]
``--single-template`` skips the replica rule, for the base, which is not deployed alone.
Exits 1 and prints one line per broken rule.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

DEFAULT_GRACE_PERIOD_S = 20.0
SERVICE_NAME = "quorum.route.v1.RouteService"


def _arg_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _port_of(address: str) -> int | None:
    _, _, port = address.rpartition(":")
    return int(port) if port.isdigit() else None


def _prestop_seconds(container: dict[str, Any]) -> float:
    pre = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre:
        return float(pre["sleep"].get("seconds", 0))
    command = pre.get("exec", {}).get("command", [])
    if len(command) == 2 and command[0].endswith("sleep"):
        return float(command[1])
    return 0.0


def check(docs: list[dict[str, Any]], single_template: bool) -> list[str]:
    problems: list[str] = []
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    configmaps = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}
    hpas = {
        d["spec"]["scaleTargetRef"]["name"]: d for d in by_kind.get("HorizontalPodAutoscaler", [])
    }

    quorum = [d for d in by_kind.get("Deployment", []) if d["metadata"]["name"] == "quorum"]
    if len(quorum) != 1:
        return ["Deployment/quorum: expected exactly one in the render"]
    deployment = quorum[0]
    where = "Deployment/quorum"
    pod = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "quorum")

    config: dict[str, Any] = {}
    mounted = [v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v]
    for name in mounted:
        if name not in configmaps:
            problems.append(f"{where}: mounts ConfigMap {name!r}, which the render lacks")
        else:
            config = yaml.safe_load(configmaps[name]["data"].get("quorum.yaml", "")) or {}

    grace = float((config.get("server") or {}).get("grace_period_s", DEFAULT_GRACE_PERIOD_S))
    prestop = _prestop_seconds(container)
    termination = float(pod.get("terminationGracePeriodSeconds", 30))
    if termination <= prestop + grace:
        problems.append(
            f"{where}: terminationGracePeriodSeconds {termination:g} must exceed preStop "
            f"{prestop:g} s + server.grace_period_s {grace:g} s"
        )
    if prestop <= 0:
        problems.append(f"{where}: no preStop sleep; endpoints may still route to a draining pod")

    args = container.get("args", [])
    address = _arg_value(args, "--address") or (config.get("server") or {}).get(
        "address", "[::]:50051"
    )
    port = _port_of(address)
    if not address.startswith("[::]") and not address.startswith("0.0.0.0"):
        problems.append(f"{where}: --address {address} must listen on all interfaces")
    for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container.get(probe_name)
        if probe is None:
            problems.append(f"{where}: {probe_name} missing")
            continue
        grpc = probe.get("grpc")
        if grpc is None:
            problems.append(f"{where}: {probe_name} is not a gRPC probe")
        elif grpc.get("port") != port:
            problems.append(
                f"{where}: {probe_name} dials port {grpc.get('port')}, server listens on {port}"
            )
    readiness = (container.get("readinessProbe") or {}).get("grpc") or {}
    if readiness and readiness.get("service") != SERVICE_NAME:
        problems.append(f"{where}: readinessProbe should ask for service {SERVICE_NAME}")

    for service in by_kind.get("Service", []):
        spec = service["spec"]
        if spec.get("clusterIP") == "None" and spec.get("publishNotReadyAddresses"):
            problems.append(
                f"Service/{service['metadata']['name']}: a headless Service for client-side "
                "balancing must not publish pods that are not ready"
            )

    if not single_template:
        hpa = hpas.get("quorum")
        spec = hpa["spec"] if hpa else deployment["spec"]
        most = int(spec.get("maxReplicas", spec.get("replicas", 1)))
        redis_url = (config.get("state") or {}).get("redis_url")
        if most > 1 and not redis_url:
            problems.append(
                f"{where}: up to {most} replicas but state.redis_url is unset; breakers and "
                "budgets would be counted per replica"
            )
    return problems


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    path = argv[0]
    with open(path, encoding="utf-8") as handle:
        docs = [d for d in yaml.safe_load_all(handle) if d]
    problems = check(docs, single_template="--single-template" in argv[1:])
    for problem in problems:
        print(f"  {path}: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
