"""The kubelet on a real node: containerd and runc, CNI in a network namespace of the test's own,
images from the lab registry, driven through the real kubectl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubelab_testing.commands import stop
from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from provisioner.system import packages
from tests.integration.conftest import running_lab
from tests.support.components import Containerd, require, running_containerd

NODE_IP = "10.250.0.2"


@dataclass
class Node:
    name: str
    netns: str
    containerd: Containerd
    root: Path
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.root / "kubelet.log").open("ab")
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, timeout=15)

    def tasks(self) -> dict[str, tuple[int, str]]:
        rows = self.containerd.ctr("tasks", "list").stdout.splitlines()[1:]
        return {r.split()[0]: (int(r.split()[1]), r.split()[2]) for r in rows if len(r.split()) >= 3}

    def log(self) -> str:
        return (self.root / "kubelet.log").read_text()[-3000:]


@pytest.fixture(scope="module")
def kubelet_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A lab of the module's own: the node must not take the pods other tests leave pending."""
    with running_lab(tmp_path_factory.mktemp("kubelet-home"), "kubelet") as lab:
        yield lab


@pytest.fixture(scope="module")
def k(kubelet_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(kubelet_lab.kubeconfig, cache_dir=tmp_path_factory.mktemp("kubelet-kubectl"))


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def node(kubelet_lab: Lab, k: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    require(packages.CNI_BRIDGE, packages.CONTAINERD, packages.RUNC)
    name = f"kl-it-{uuid.uuid4().hex[:6]}"
    netns = f"{name}-node"
    root = tmp_path_factory.mktemp("kubelet-root")
    hosts = root / "hosts" / "docker.io"
    hosts.mkdir(parents=True)
    registry = kubelet_lab.registry
    hosts.joinpath("hosts.toml").write_text(
        f'server = "http://{registry}"\n\n[host."http://{registry}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    _ip("netns", "add", netns)
    try:
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "link", "add", "node0", "type", "veth", "peer", "name", "node1")
        _ip("-n", netns, "addr", "add", f"{NODE_IP}/24", "dev", "node0")
        _ip("-n", netns, "link", "set", "node0", "up")
        _ip("-n", netns, "link", "set", "node1", "up")
        with running_containerd(f"{name}-k8s") as containerd:
            argv = [
                sys.executable,
                *("-m", "agents.kubelet", "--kubeconfig", str(kubelet_lab.kubeconfig)),
                *("--node-name", name, "--node-ip", NODE_IP, "--root-dir", str(root / "kubelet")),
                *("--containerd-address", str(containerd.socket), "--containerd-namespace", containerd.namespace),
                *("--containerd-hosts-dir", str(root / "hosts"), "--network-node-netns", netns),
                *("--network-bridge", "klit0", "--lease-interval", "2"),
            ]
            started = Node(name, netns, containerd, root, argv)
            started.start()
            try:
                eventually(lambda: _ready(k, name), timeout=30, what=f"node {name} Ready")
                yield started
            finally:
                started.stop()
                k("delete", "node", name, "--wait=false")
    finally:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():  # pods' UTS namespace files
            point = line.split()[4]
            if point.startswith(str(root) + "/"):
                subprocess.run(["umount", "-l", point], check=False)
        for line in subprocess.run(
            ["ip", "netns", "list"], check=True, capture_output=True, text=True
        ).stdout.splitlines():
            namespace = line.split()[0] if line.split() else ""
            if namespace.startswith(f"kl-{name}-"):  # the pods' sandboxes this node left
                subprocess.run(["ip", "netns", "delete", namespace], check=False)
        subprocess.run(["ip", "netns", "delete", netns], check=False)


def _ready(k: Kubectl, name: str) -> bool:
    found = k("get", "node", name, "-o", "json")
    if not found.ok:
        return False
    conditions = json.loads(found.out)["status"].get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@pytest.fixture(autouse=True)
def story_on_failure(request: pytest.FixtureRequest, node: Node, k: Kubectl) -> Iterator[None]:
    """A failed test prints what the kubelet logged and what its pods say."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- kubelet log ---\n{node.log()}")
        print(f"--- pods ---\n{k('get', 'pods', '-A', '-o', 'wide').out}")


@pytest.fixture
def ns(k: Kubectl) -> Iterator[str]:
    name = f"kt-{uuid.uuid4().hex[:6]}"
    k.ok("create", "namespace", name)
    yield name
    k("delete", "namespace", name, "--wait=false")


def pod_json(k: Kubectl, ns: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = k.json("get", "pod", name, "-n", ns)
    return found


def state(k: Kubectl, ns: str, name: str, container: str) -> dict[str, Any]:
    statuses = pod_json(k, ns, name)["status"].get("containerStatuses") or []
    return next((dict(s) for s in statuses if s["name"] == container), {})


def pod(name: str, node: Node, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    body = {"nodeName": node.name, "containers": list(containers), **spec}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": body}


def test_the_node_reports_the_machine_and_gets_a_pod_cidr(k: Kubectl, node: Node) -> None:
    found = k.json("get", "node", node.name)
    assert found["status"]["capacity"]["cpu"] == str(os.cpu_count())
    assert found["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://1.")
    assert {"type": "InternalIP", "address": NODE_IP} in found["status"]["addresses"]
    eventually(lambda: k.json("get", "node", node.name)["spec"].get("podCIDR"), timeout=15, what="a podCIDR")
    lease = k.json("get", "lease", node.name, "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == node.name


def test_a_pod_runs_with_an_ip_from_the_node_and_its_containers_share_localhost(
    k: Kubectl, node: Node, ns: str
) -> None:
    web = {
        "name": "web",
        "image": "echo:1.0",
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
    }
    fetch = "for i in $(seq 50); do wget -q -O - http://127.0.0.1:8080/ && exit 0; sleep 0.1; done; exit 1"
    client = {"name": "client", "image": "busybox", "command": ["sh", "-c", fetch]}
    k.ok("apply", "-n", ns, "-f", "-", stdin=manifest(pod("pair", node, web, client, restartPolicy="Never")))
    done = eventually(
        lambda: state(k, ns, "pair", "client").get("state", {}).get("terminated"), timeout=60, what="the client"
    )
    assert done["exitCode"] == 0, node.log()
    found = pod_json(k, ns, "pair")
    cidr = k.json("get", "node", node.name)["spec"]["podCIDR"]
    assert found["status"]["phase"] == "Running" and "running" in state(k, ns, "pair", "web")["state"]
    prefix = cidr.rsplit(".", 1)[0] + "."
    assert found["status"]["podIP"].startswith(prefix) and found["status"]["hostIP"] == NODE_IP
    logs = list((node.root / "kubelet" / "pods" / found["metadata"]["uid"] / "logs" / "client").glob("*.log"))
    assert logs[0].read_text().strip() == f"pod pair ip {found['status']['podIP']} method GET path /"
    story = k.ok("describe", "pod", "pair", "-n", ns)
    assert "Started container client" in story and "Pulled" in story


def test_a_configmap_and_a_secret_appear_as_files_and_env(k: Kubectl, node: Node, ns: str) -> None:
    k.ok("create", "configmap", "cfg", "-n", ns, "--from-literal=color=blue")
    k.ok("create", "secret", "generic", "sec", "-n", ns, "--from-literal=token=s3cret")
    check = (
        'test "$BOTH" = blue-s3cret && test "$(cat /etc/cfg/color)" = blue'
        ' && test "$(cat /etc/sec/token)" = s3cret && touch /scratch/x'
    )
    container = {
        "name": "check",
        "image": "busybox",
        "command": ["sh", "-c", check],
        "env": [
            {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
            {"name": "BOTH", "value": "$(COLOR)-$(TOKEN)"},
        ],
        "volumeMounts": [
            {"name": "cfg", "mountPath": "/etc/cfg"},
            {"name": "sec", "mountPath": "/etc/sec", "readOnly": True},
            {"name": "scratch", "mountPath": "/scratch"},
        ],
    }
    volumes = [
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {"name": "sec", "secret": {"secretName": "sec"}},
        {"name": "scratch", "emptyDir": {}},
    ]
    body = pod("files", node, container, volumes=volumes, restartPolicy="Never")
    k.ok("apply", "-n", ns, "-f", "-", stdin=manifest(body))
    phase = eventually(
        lambda: (
            pod_json(k, ns, "files")["status"].get("phase") in ("Succeeded", "Failed")
            and pod_json(k, ns, "files")["status"]["phase"]
        ),
        timeout=60,
        what="the pod to finish",
    )
    assert phase == "Succeeded", k.ok("describe", "pod", "files", "-n", ns)


def test_a_crashing_container_backs_off_and_says_crash_loop_back_off(k: Kubectl, node: Node, ns: str) -> None:
    crash = {"name": "main", "image": "busybox", "command": ["sh", "-c", "echo crashing; exit 3"]}
    k.ok("apply", "-n", ns, "-f", "-", stdin=manifest(pod("crash", node, crash)))

    def looping() -> dict[str, Any] | None:
        found = state(k, ns, "crash", "main")
        waiting = (found.get("state") or {}).get("waiting") or {}
        return found if waiting.get("reason") == "CrashLoopBackOff" and found["restartCount"] >= 1 else None

    found = eventually(looping, timeout=60, what="CrashLoopBackOff")
    assert found["lastState"]["terminated"]["exitCode"] == 3
    assert "back-off" in found["state"]["waiting"]["message"]
    assert k.ok("get", "pod", "crash", "-n", ns).splitlines()[1].split()[2] == "CrashLoopBackOff"


def test_an_image_the_registry_lacks_is_err_image_pull_with_its_message(k: Kubectl, node: Node, ns: str) -> None:
    missing = {"name": "main", "image": "no-such-image:1.0"}
    k.ok("apply", "-n", ns, "-f", "-", stdin=manifest(pod("missing", node, missing)))

    def pull_failed() -> dict[str, Any] | None:
        waiting = (state(k, ns, "missing", "main").get("state") or {}).get("waiting") or {}
        return waiting if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff") else None

    waiting = eventually(pull_failed, timeout=60, what="ErrImagePull")
    assert "docker.io/library/no-such-image:1.0" in waiting["message"] and "not found" in waiting["message"]


def test_a_deleted_pod_stops_and_its_sandbox_goes(k: Kubectl, node: Node, ns: str) -> None:
    main = {"name": "main", "image": "echo:1.0"}
    k.ok("apply", "-n", ns, "-f", "-", stdin=manifest(pod("gone", node, main)))
    eventually(lambda: pod_json(k, ns, "gone")["status"].get("phase") == "Running", timeout=60, what="running")
    uid = pod_json(k, ns, "gone")["metadata"]["uid"]
    began = time.monotonic()
    k.ok("delete", "pod", "gone", "-n", ns, "--timeout=60s")
    assert time.monotonic() - began < 20  # the echo server ends on SIGTERM: no waiting out the grace period
    assert not [t for t in node.tasks() if t.startswith(uid)]
    netns = subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, text=True).stdout
    assert uid not in netns


def test_a_restarted_kubelet_adopts_running_containers_without_restarting_them(k: Kubectl, node: Node, ns: str) -> None:
    main = {"name": "main", "image": "busybox", "command": ["sleep", "3600"]}
    k.ok("apply", "-n", ns, "-f", "-", stdin=manifest(pod("steady", node, main)))
    eventually(lambda: pod_json(k, ns, "steady")["status"].get("phase") == "Running", timeout=60, what="running")
    uid = pod_json(k, ns, "steady")["metadata"]["uid"]
    before = {t: v for t, v in node.tasks().items() if t.startswith(uid)}
    assert [v[1] for v in before.values()] == ["RUNNING"]
    runs = node.log().count("adopted")
    node.stop()
    node.start()
    eventually(lambda: node.log().count("adopted") > runs, timeout=30, what="the kubelet to come back")
    k.ok("label", "pod", "steady", "-n", ns, "touched=yes")  # makes the kubelet sync the pod again
    eventually(
        lambda: pod_json(k, ns, "steady")["metadata"]["labels"].get("touched") == "yes", timeout=15, what="the label"
    )
    after = {t: v for t, v in node.tasks().items() if t.startswith(uid)}
    assert after == before
    assert state(k, ns, "steady", "main")["restartCount"] == 0


def events_of(k: Kubectl, ns: str, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = k.json("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}")[
        "items"
    ]
    return found


def test_a_failing_liveness_probe_restarts_the_container_after_its_pre_stop_hook(
    k: Kubectl, node: Node, ns: str
) -> None:
    web = {
        "name": "web",
        "image": "echo:1.0",
        "livenessProbe": {
            "httpGet": {"path": "/no-such-page", "port": 8080},
            "periodSeconds": 1,
            "failureThreshold": 2,
        },
        # kube's kubelet runs the preStop hook whatever the reason a container is killed
        "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo stopped >> /data/hooks"]}}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    # a second container shows the hook's file in its log (the sick one is killed again at each run)
    reader = {
        "name": "reader",
        "image": "busybox",
        "command": ["sh", "-c", "until cat /data/hooks 2>/dev/null; do sleep 1; done; sleep 3600"],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    volumes = [{"name": "data", "emptyDir": {}}]
    k.ok("apply", "-n", ns, "-f", "-", stdin=manifest(pod("sick", node, web, reader, volumes=volumes)))
    eventually(lambda: state(k, ns, "sick", "web").get("restartCount", 0) >= 1, timeout=60, what="a restart")
    reasons = {e["reason"]: e["message"] for e in events_of(k, ns, "sick")}
    assert reasons["Unhealthy"] == "Liveness probe failed: HTTP probe failed with statuscode: 404"
    assert reasons["Killing"] == "Container web failed liveness probe, will be restarted"
    logs = node.root / "kubelet" / "pods" / pod_json(k, ns, "sick")["metadata"]["uid"] / "logs" / "reader"
    eventually(
        lambda: "stopped" in "".join(f.read_text() for f in logs.glob("*.log")),
        timeout=30,
        what="the preStop hook's line",
    )


def test_readiness_and_tcp_probes_decide_when_the_pod_is_ready(k: Kubectl, node: Node, ns: str) -> None:
    late = {
        "name": "late",
        "image": "busybox",
        "command": ["sh", "-c", "sleep 8; touch /tmp/ready; sleep 3600"],
        "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1},
    }
    web = {"name": "web", "image": "echo:1.0", "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}
    k.ok("apply", "-n", ns, "-f", "-", stdin=manifest(pod("slow", node, late, web)))

    def ready() -> str:
        conditions = pod_json(k, ns, "slow")["status"].get("conditions") or []
        return next((c["status"] for c in conditions if c["type"] == "Ready"), "")

    eventually(lambda: state(k, ns, "slow", "late").get("started"), timeout=60, what="the container running")
    assert ready() == "False"  # the file appears 8 s after the start
    eventually(lambda: ready() == "True", timeout=30, what="Ready")
    assert state(k, ns, "slow", "web")["ready"] and state(k, ns, "slow", "late")["ready"]


def test_a_container_beyond_its_memory_limit_ends_oom_killed_and_its_restart_keeps_it_as_last_state(
    k: Kubectl, node: Node, ns: str
) -> None:
    """busybox has no allocator: a shell doubling a variable reaches a 16 MiB limit in a moment."""
    hungry = {
        "name": "main",
        "image": "busybox",
        "command": ["sh", "-c", "x=0123456789abcdef; while true; do x=$x$x; done"],
        "resources": {"limits": {"memory": "16Mi"}},
    }
    k.ok("apply", "-n", ns, "-f", "-", stdin=manifest(pod("hungry", node, hungry)))

    def restarted() -> dict[str, Any] | None:
        found = state(k, ns, "hungry", "main")
        return found if found.get("restartCount", 0) >= 1 and found.get("lastState", {}).get("terminated") else None

    found = eventually(restarted, timeout=90, what="the container OOM killed and restarted")
    terminated = found["lastState"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137), node.log()
    reasons = {e["reason"] for e in events_of(k, ns, "hungry")}
    assert "BackOff" in reasons or "Started" in reasons


def test_a_missing_command_ends_start_error_with_the_runtime_s_message_and_exit_0_ends_completed(
    k: Kubectl, node: Node, ns: str
) -> None:
    missing = {"name": "missing", "image": "busybox", "command": ["no-such-command"]}
    done = {"name": "done", "image": "busybox", "command": ["true"]}
    k.ok("apply", "-n", ns, "-f", "-", stdin=manifest(pod("cannot", node, missing, done, restartPolicy="Never")))
    eventually(lambda: pod_json(k, ns, "cannot")["status"].get("phase") == "Failed", timeout=60, what="the pod Failed")
    terminated = state(k, ns, "cannot", "missing")["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("StartError", 128)
    assert terminated["message"].startswith("failed to create containerd task: ")
    assert 'exec: "no-such-command": executable file not found in $PATH' in terminated["message"]
    completed = state(k, ns, "cannot", "done")["state"]["terminated"]
    assert (completed["reason"], completed["exitCode"]) == ("Completed", 0)
    failed = [e["message"] for e in events_of(k, ns, "cannot") if e["reason"] == "Failed"]
    assert any(m.startswith("Error: failed to create containerd task: ") for m in failed)


def test_a_start_error_under_restart_always_backs_off_with_the_start_error_as_last_state(
    k: Kubectl, node: Node, ns: str
) -> None:
    missing = {"name": "main", "image": "busybox", "command": ["/no/such/binary"]}
    k.ok("apply", "-n", ns, "-f", "-", stdin=manifest(pod("retrying", node, missing)))

    def backing_off() -> dict[str, Any] | None:
        found = state(k, ns, "retrying", "main")
        waiting = (found.get("state") or {}).get("waiting") or {}
        return found if waiting.get("reason") == "CrashLoopBackOff" else None

    found = eventually(backing_off, timeout=60, what="CrashLoopBackOff")
    assert found["lastState"]["terminated"]["reason"] == "StartError"
    assert found["lastState"]["terminated"]["exitCode"] == 128
    eventually(
        lambda: "BackOff" in {e["reason"] for e in events_of(k, ns, "retrying")}, timeout=30, what="a BackOff event"
    )


def test_a_container_finds_the_api_server_and_its_namespace_s_services_in_its_environment(
    k: Kubectl, node: Node, ns: str
) -> None:
    k.ok("create", "service", "clusterip", "web-front", "--tcp=80:8080", "-n", ns)
    api = k.json("get", "service", "kubernetes", "-n", "default")["spec"]["clusterIP"]
    web = k.json("get", "service", "web-front", "-n", ns)["spec"]["clusterIP"]
    printer = {"name": "env", "image": "busybox", "command": ["sh", "-c", "env | sort"]}
    k.ok("apply", "-n", ns, "-f", "-", stdin=manifest(pod("linked", node, printer, restartPolicy="Never")))
    unlinked = pod("unlinked", node, printer, restartPolicy="Never", enableServiceLinks=False)
    k.ok("apply", "-n", ns, "-f", "-", stdin=manifest(unlinked))

    def finished(name: str) -> bool:
        return bool(pod_json(k, ns, name)["status"].get("phase") == "Succeeded")

    eventually(lambda: finished("linked") and finished("unlinked"), timeout=60, what="both pods to finish")

    def output(name: str) -> str:
        uid = pod_json(k, ns, name)["metadata"]["uid"]
        return "".join(f.read_text() for f in (node.root / "kubelet" / "pods" / uid / "logs" / "env").glob("*.log"))

    linked = set(output("linked").split())
    assert {
        f"KUBERNETES_SERVICE_HOST={api}",
        "KUBERNETES_SERVICE_PORT=443",
        f"KUBERNETES_PORT=tcp://{api}:443",
    } <= linked
    assert {f"WEB_FRONT_SERVICE_HOST={web}", "WEB_FRONT_SERVICE_PORT=80", f"WEB_FRONT_PORT_80_TCP_ADDR={web}"} <= linked
    bare = output("unlinked")
    assert f"KUBERNETES_SERVICE_HOST={api}" in bare.split() and "WEB_FRONT" not in bare


def test_a_pod_s_service_account_volume_holds_a_token_bound_to_it_the_ca_and_its_namespace(
    kubelet_lab: Lab, k: Kubectl, node: Node, ns: str
) -> None:
    check = (
        "d=/var/run/secrets/kubernetes.io/serviceaccount;"
        ' test "$(cat $d/namespace)" = "$NS" && grep -q "BEGIN CERTIFICATE" $d/ca.crt && test -s $d/token'
    )
    env = [{"name": "NS", "value": ns}]
    body = pod(
        "in-cluster",
        node,
        {"name": "c", "image": "busybox", "command": ["sh", "-c", check], "env": env},
        restartPolicy="Never",
    )
    k.ok("apply", "-n", ns, "-f", "-", stdin=manifest(body))
    phase = eventually(
        lambda: (
            pod_json(k, ns, "in-cluster")["status"].get("phase") in ("Succeeded", "Failed")
            and pod_json(k, ns, "in-cluster")["status"]["phase"]
        ),
        timeout=60,
        what="the pod to finish",
    )
    assert phase == "Succeeded", k.ok("describe", "pod", "in-cluster", "-n", ns)
    found = pod_json(k, ns, "in-cluster")
    volume = found["spec"]["volumes"][0]["name"]
    token = (
        node.root / "kubelet" / "pods" / found["metadata"]["uid"] / "volumes" / "projected" / volume / "token"
    ).read_text()
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
    answer = json.loads(k.ok("create", "-f", "-", "-o", "json", stdin=json.dumps(review)))["status"]
    assert answer["authenticated"] and answer["user"]["username"] == f"system:serviceaccount:{ns}:default"
