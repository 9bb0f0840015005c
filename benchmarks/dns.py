"""Cluster DNS from a pod: queries per second and their latency, and how soon a new Service answers.

A client pod (the built-in ``python`` image, its standard library only) runs beside the workload, as
an application would, and asks the kube-dns Service (the pod's nameserver: UDP through the proxy's
rules to a kube-dns pod, perhaps on another node):

- throughput: ``--queries`` (2000) A queries for ``kubernetes.default.svc.cluster.local``, at most
  ``--window`` (16) outstanding on one socket; queries per second over the run, and each query's
  time from sending to its answer (p50, p99); a query without an answer within 2 s is counted lost;
- propagation: ``--services`` (10) times, the pod creates a Service through the API (its
  ServiceAccount may, by a Role this benchmark grants) and asks for its name every 5 ms until the
  answer has its ClusterIP: the time from the create's response to that answer, on the pod's own
  clock (the watch to kube-dns, its zone rebuild, the query).

Against ``--kubeconfig`` (a VM lab, say) or a fresh local lab with one node. Prints the figures and a
JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import emit
from kubelab_testing.lab import created_lab, up_flags

CLIENT = r'''
import json, os, random, select, socket, ssl, struct, sys, time, urllib.request

SERVER = open("/etc/resolv.conf").read().split("nameserver ")[1].split()[0]
QUERIES, WINDOW, SERVICES = (int(v) for v in sys.argv[1:4])
NAMESPACE = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read().strip()


def query(name, ident):
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", 1, 1)


def answers(data):
    """(id, rcode, the A records' addresses) of a reply."""
    ident, flags, qd, an = struct.unpack("!HHHH", data[:8])
    at = 12
    for _ in range(qd):
        while data[at]:
            at += data[at] + 1
        at += 5
    found = []
    for _ in range(an):
        at += 2 if data[at] & 0xC0 == 0xC0 else len(data[at:].split(b"\0", 1)[0]) + 1
        rtype, _cls, _ttl, size = struct.unpack("!HHIH", data[at:at + 10])
        at += 10
        if rtype == 1:
            found.append(socket.inet_ntoa(data[at:at + 4]))
        at += size
    return ident, flags & 0xF, found


def ask(sock, name, timeout=1.0):
    ident = random.randrange(65536)
    sock.sendto(query(name, ident), (SERVER, 53))
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if select.select([sock], [], [], max(0.0, end - time.monotonic()))[0]:
            got = answers(sock.recv(4096))
            if got[0] == ident:
                return got
    return None


def throughput(sock):
    name = "kubernetes.default.svc.cluster.local"
    sent, latencies, lost, ident = {}, [], 0, 0
    began = time.monotonic()
    while ident < QUERIES or sent:
        while ident < QUERIES and len(sent) < WINDOW:
            ident += 1
            sent[ident] = time.monotonic()
            sock.sendto(query(name, ident), (SERVER, 53))
        if select.select([sock], [], [], 0.05)[0]:
            got = answers(sock.recv(4096))
            if got[0] in sent and got[2]:
                latencies.append(time.monotonic() - sent.pop(got[0]))
        now = time.monotonic()
        for key in [k for k, t in sent.items() if now - t > 2.0]:
            del sent[key]
            lost += 1
    return len(latencies) / (time.monotonic() - began), sorted(latencies), lost


def api(method, path, body=None):
    token = open("/var/run/secrets/kubernetes.io/serviceaccount/token").read()
    context = ssl.create_default_context(cafile="/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
    url = f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}{path}"
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), context=context) as r:
        return json.loads(r.read())


def propagation(sock):
    delays = []
    for i in range(SERVICES):
        name = f"fresh-{i}-{random.randrange(10**6)}"
        body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"ports": [{"port": 80}]}}
        ip = api("POST", f"/api/v1/namespaces/{NAMESPACE}/services", body)["spec"]["clusterIP"]
        created = time.monotonic()
        fqdn = f"{name}.{NAMESPACE}.svc.cluster.local"
        while time.monotonic() - created < 30:
            got = ask(sock, fqdn, 0.5)
            if got and ip in got[2]:
                delays.append(time.monotonic() - created)
                break
            time.sleep(0.005)
        api("DELETE", f"/api/v1/namespaces/{NAMESPACE}/services/{name}")
    return sorted(delays)


sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
deadline = time.monotonic() + 120
while not ask(sock, "kubernetes.default.svc.cluster.local"):
    if time.monotonic() > deadline:
        print(json.dumps({"error": f"no answer from {SERVER} in 120 s"}))
        sys.exit(1)
qps, latencies, lost = throughput(sock)
delays = propagation(sock)
pick = lambda values, p: values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))] if values else None
print(json.dumps({
    "server": SERVER, "queries": QUERIES, "window": WINDOW, "qps": round(qps, 1), "lost": lost,
    "latency_p50_ms": round(pick(latencies, 50) * 1000, 2), "latency_p99_ms": round(pick(latencies, 99) * 1000, 2),
    "new_service_p50_ms": round(pick(delays, 50) * 1000, 1) if delays else None,
    "new_service_max_ms": round(delays[-1] * 1000, 1) if delays else None,
    "new_services_answered": len(delays), "new_services": SERVICES,
}))
'''


class BenchmarkError(Exception):
    pass


def kubectl(kubeconfig: Path, *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", *args], input=stdin, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchmarkError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def manifests(namespace: str, queries: int, window: int, services: int) -> str:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "services", "namespace": namespace},
        "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["create", "delete"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "services", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "services"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
    }
    script = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "client", "namespace": namespace},
        "data": {"client.py": CLIENT},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client", "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "client",
                    "image": "python:3",
                    "command": ["python3", "/bench/client.py", str(queries), str(window), str(services)],
                    "volumeMounts": [{"name": "script", "mountPath": "/bench"}],
                }
            ],
            "volumes": [{"name": "script", "configMap": {"name": "client"}}],
        },
    }
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [role, binding, script, pod]})


def measure(kubeconfig: Path, *, queries: int, window: int, services: int, timeout: float = 600) -> dict[str, Any]:
    namespace = f"bench-dns-{uuid.uuid4().hex[:6]}"
    kubectl(kubeconfig, "create", "namespace", namespace)
    try:
        kubectl(kubeconfig, "apply", "-f", "-", stdin=manifests(namespace, queries, window, services))
        end = time.monotonic() + timeout
        phase = ""
        while phase not in ("Succeeded", "Failed"):
            if time.monotonic() > end:
                raise BenchmarkError(f"the client pod did not finish within {timeout:.0f}s")
            time.sleep(1)
            phase = kubectl(kubeconfig, "get", "pod", "client", "-n", namespace, "-o", "jsonpath={.status.phase}")
        node = kubectl(kubeconfig, "get", "pod", "client", "-n", namespace, "-o", "jsonpath={.spec.nodeName}")
        lines = kubectl(kubeconfig, "logs", "client", "-n", namespace).strip().splitlines()
        result = json.loads(lines[-1]) if lines else {}
        if phase != "Succeeded" or "error" in result:
            raise BenchmarkError(f"the client pod failed: {result.get('error') or lines[-3:]}")
        return {**result, "client_node": node}
    finally:
        subprocess.run(
            ["kubectl", f"--kubeconfig={kubeconfig}", "delete", "namespace", namespace, "--wait=false"],
            capture_output=True,
            check=False,
        )


def summary(figures: dict[str, Any]) -> str:
    return (
        f"{figures['qps']} queries/s ({figures['queries']} queries, {figures['window']} outstanding, lost"
        f" {figures['lost']}), latency p50 {figures['latency_p50_ms']} ms, p99 {figures['latency_p99_ms']} ms;"
        f" a new Service answers after p50 {figures['new_service_p50_ms']} ms, at most"
        f" {figures['new_service_max_ms']} ms ({figures['new_services_answered']}/{figures['new_services']})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", type=Path, help="measure this cluster instead of a fresh local lab")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--window", type=int, default=16, help="queries outstanding at once")
    parser.add_argument("--services", type=int, default=10, help="new Services timed until they answer")
    args = parser.parse_args(argv)
    try:
        if args.kubeconfig:
            figures = measure(args.kubeconfig, queries=args.queries, window=args.window, services=args.services)
        else:
            with created_lab("benchdns", up_flags("local", "--nodes", "1")) as lab:
                figures = measure(lab.kubeconfig, queries=args.queries, window=args.window, services=args.services)
    except BenchmarkError as exc:
        print(f"benchmark dns: {exc}", file=sys.stderr)
        return 1
    print(f"cluster DNS from a pod on {figures['client_node']}: {summary(figures)}", flush=True)
    emit("dns", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
