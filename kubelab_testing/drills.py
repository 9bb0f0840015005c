"""Fault drills on a VM lab: a Deployment behind a NodePort Service is rolled to a new version while a
fault is injected and requests flow at the Service; a drill records what happened when.

Figures of a drill (seconds from the fault):
- detected: the node's Ready condition is no longer True (worker faults);
- replaced: no live pod of the Deployment is left on the node and all replicas exist elsewhere;
- recovered: after ``kubelab fault heal``, every replica of the new version Running and Ready with
  nothing left over (no pod of an old version, none terminating);
- requests: how many requests were sent from the fault on, how many failed, and until when.

The zero-loss rollout drill (:func:`drained_rollout`) has no fault: a Deployment of its own
(:data:`DRAINED`) whose pods drain as users make them (a preStop sleep inside a longer grace period,
a readiness probe) is rolled to a new version under the same load; its figures are the rollout's
seconds and the requests sent and lost meanwhile. Its requests have a longer deadline
(:data:`ROLLOUT_DEADLINE`): the drill asks whether a request is lost, not whether a busy emulated
worker answers within a second, and says how many answers took longer than one. The same pods without
the hook (``pre_stop=False``) show what it saves; the benchmark prints both (docs/faults.md has the figures).

The volume drill (:func:`lose_volume_worker`) powers off the worker holding a StatefulSet pod's disk,
taints the node out-of-service once the pod is evicted (kube's non-graceful node shutdown, an operator's
step) and follows the pod and its disk to the other worker; the new pod reads back what the first wrote.

The e2e suites assert on these figures and the benchmark prints them.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import yaml

from kubelab_testing.faults import Faults
from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.loadprobe import ServiceLoad, Summary
from kubelab_testing.waiting import eventually
from provisioner.lab.components import unit_of

NAME = "roll"
REPLICAS = 6
ALLOCATIONS = "/kubelab/allocations/"  # the API server's ClusterIP and NodePort reservations
TOLERATION = 20  # seconds the drill's pods stay on a NotReady/unreachable node (the lab default is 300)
# the figures' checks (kubectl, ssh) poll once a second, as when docs/faults.md's figures were measured:
# faster polling would take host CPU from the emulated machines while they are timed
POLL = 1.0
DRAINED = "drained"  # the zero-loss rollout drill's Deployment and Service
# its pods' preStop sleep, as users write it, long enough for the pod's removal from the EndpointSlice to
# reach every proxy (on the TCG lab, during a rollout, new requests still reached a pod up to 5.9 s after
# its kubelet had begun to stop it) ...
PRE_STOP_SECONDS = 10
GRACE_SECONDS = 20  # ... inside a longer terminationGracePeriodSeconds
# The rollout drill's request deadline: long enough for an answer from a pod on a single-vCPU TCG worker
# that is starting containers meanwhile (up to 4.7 s seen here; machines of this kind differ up to 3x).
# A request sent to an endpoint that is gone is never answered, whatever the deadline: its SYN's retries
# keep conntrack's translation to that endpoint. The figures say how many answers took over 1 s.
ROLLOUT_DEADLINE = 10.0

MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  strategy:
    rollingUpdate: {{maxSurge: 2, maxUnavailable: 1}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      tolerations:
      - {{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: {toleration}}}
      - {{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: {toleration}}}
      containers:
      - name: echo
        image: echo:1.0
        ports: [{{containerPort: 8080}}]
        env:
        - {{name: VERSION, value: v1}}
        - name: POD_NAME
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        - name: POD_IP
          valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}
        readinessProbe:
          httpGet: {{path: /, port: 8080}}
          periodSeconds: 2
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  type: NodePort
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


def _version(pod: dict[str, Any]) -> str:
    env = pod["spec"]["containers"][0].get("env") or []
    return next((e.get("value", "") for e in env if e["name"] == "VERSION"), "")


def _ready(obj: dict[str, Any]) -> bool:
    conditions = obj.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _get(kubectl: Kubectl, *args: str) -> Any:
    """``kubectl get ... -o json``, or None while the API server does not answer (a drill breaks it on
    purpose: the checks polled during a fault read that as "not yet")."""
    done = kubectl("get", *args, "-o", "json")
    return json.loads(done.out) if done.ok else None


def node_ready(kubectl: Kubectl, node: str) -> str | None:
    """The node's Ready condition: True, False, Unknown ('' when it has none; None: no answer)."""
    got = _get(kubectl, "node", node)
    if got is None:
        return None
    conditions = got["status"].get("conditions") or []
    return next((c["status"] for c in conditions if c["type"] == "Ready"), "")


def all_nodes_ready(kubectl: Kubectl) -> bool:
    got = _get(kubectl, "nodes")
    return got is not None and bool(got["items"]) and all(_ready(n) for n in got["items"])


def drill_manifest(name: str = NAME, *, pre_stop: bool = False) -> str:
    """The drill's Deployment and Service named ``name``; with ``pre_stop``, its pods drain as users
    make them: ``sleep`` in a preStop hook, within a longer grace period (the container answers
    through the sleep, while the proxies stop sending it new connections, then ends on its SIGTERM)."""
    text = MANIFEST.format(name=name, replicas=REPLICAS, toleration=TOLERATION)
    if not pre_stop:
        return text
    deployment, service = yaml.safe_load_all(text)
    pod = deployment["spec"]["template"]["spec"]
    pod["terminationGracePeriodSeconds"] = GRACE_SECONDS
    pod["containers"][0]["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_SECONDS)]}}}
    return manifest(deployment, service)


class Rolled:
    """A drill's Deployment and Service (:data:`NAME` unless told); every fault starts a new version."""

    def __init__(self, kubectl: Kubectl, name: str = NAME) -> None:
        self.kubectl = kubectl
        self.name = name
        self.number = 1

    @classmethod
    def create(cls, kubectl: Kubectl, *, timeout: float = 600, name: str = NAME, pre_stop: bool = False) -> Rolled:
        kubectl.ok("apply", "-f", "-", stdin=drill_manifest(name, pre_stop=pre_stop))
        rolled = cls(kubectl, name)
        rolled.wait(timeout)
        return rolled

    def delete(self) -> None:
        self.kubectl("delete", "deployment,service", self.name, "--wait=false")

    @property
    def version(self) -> str:
        return f"v{self.number}"

    def pods(self) -> list[dict[str, Any]]:
        """The drill's pods ([] while the API server does not answer)."""
        got = _get(self.kubectl, "pods", "-l", f"app={self.name}")
        return list(got["items"]) if got is not None else []

    def next(self) -> str:
        self.number += 1
        self.kubectl.ok("set", "env", f"deployment/{self.name}", f"VERSION={self.version}")
        return self.version

    def converged(self) -> bool:
        """All replicas of the current version Ready; none of another version, none terminating."""
        pods = self.pods()
        if len(pods) != REPLICAS or len({p["metadata"]["name"] for p in pods}) != REPLICAS:
            return False
        if any("deletionTimestamp" in p["metadata"] or _version(p) != self.version or not _ready(p) for p in pods):
            return False
        deployment = _get(self.kubectl, "deployment", self.name)
        if deployment is None:
            return False
        status = deployment["status"]
        return bool(status.get("updatedReplicas") == status.get("readyReplicas") == status.get("replicas") == REPLICAS)

    def live(self) -> list[dict[str, Any]]:
        """The drill's pods that are not being deleted."""
        return [p for p in self.pods() if "deletionTimestamp" not in p["metadata"]]

    def serving(self) -> bool:
        """At least all replicas Running and Ready (of whichever version), none of them terminating."""
        live = self.live()
        return sum(1 for p in live if p.get("status", {}).get("phase") == "Running" and _ready(p)) >= REPLICAS

    def wait(self, timeout: float = 600, *, interval: float = 3) -> None:
        eventually(self.converged, timeout=timeout, interval=interval, what=f"{self.name} at {self.version}")

    def entry(self, lab: Lab, avoid: str) -> str:
        """The Service's NodePort on a node other than ``avoid``, as a URL."""
        port = self.kubectl.json("get", "service", self.name)["spec"]["ports"][0]["nodePort"]
        node = next(n for n in lab.nodes if n.name != avoid)
        return f"http://{node.ip}:{port}/"


@dataclass(frozen=True)
class Figures:
    fault: str
    node: str
    detected: float | None
    replaced: float | None
    recovered: float
    requests: Summary

    def describe(self) -> str:
        parts = [f"{self.fault} {self.node}:"]
        if self.detected is not None:
            parts.append(f"NotReady +{self.detected:.1f}s,")
        if self.replaced is not None:
            parts.append(f"pods replaced +{self.replaced:.1f}s,")
        parts.append(f"recovered +{self.recovered:.1f}s; {self.requests.describe()}")
        return " ".join(parts)


def _since(began: float) -> float:
    return round(time.time() - began, 1)


def warm(load: ServiceLoad) -> None:
    eventually(lambda: any(s.ok for s in load.samples()), timeout=120, what=f"answers from {load.url}")


def wait_not_ready(kubectl: Kubectl, node: str, *, grace: float) -> None:
    """Until ``node`` is no longer Ready (its kubelet silent for the grace period, or worse)."""
    eventually(
        lambda: node_ready(kubectl, node) not in ("True", None),
        timeout=grace + 90,
        interval=POLL,
        what=f"{node} NotReady",
    )


def lose_worker(
    lab: Lab, kubectl: Kubectl, faults: Faults, rolled: Rolled, *, load: ServiceLoad, fault: str, node: str
) -> Figures:
    """``fault`` (crash, pause or partition) on worker ``node`` during a rollout; heal once its pods
    are replaced; wait for the rollout to finish."""
    grace = float(lab.spec["node_grace_period"])
    rolled.next()
    began = time.time()
    getattr(faults, fault)(node)
    wait_not_ready(kubectl, node, grace=grace)
    detected = _since(began)

    def replaced() -> bool:
        # mid-rollout there may be surge pods besides the replicas: count those bound elsewhere
        live = rolled.live()
        elsewhere = [p for p in live if p["spec"].get("nodeName") not in (None, "", node)]
        return len(elsewhere) >= REPLICAS and not [p for p in live if p["spec"].get("nodeName") == node]

    eventually(replaced, timeout=grace + TOLERATION + 180, interval=POLL, what=f"the pods of {node} replaced")
    moved = _since(began)
    faults.heal(node, wait=True)
    rolled.wait()
    return Figures(fault, node, detected, moved, _since(began), load.summary(began))


# --- the cloud's load balancer in front of the drill --------------------------------------------------

LB_SUFFIX = "-lb"


def load_balancer_entry(kubectl: Kubectl, rolled: Rolled, *, timeout: float = 120) -> str:
    """A ``type: LoadBalancer`` Service beside the drill's NodePort one (same pods); its address, as a URL."""
    name = rolled.name + LB_SUFFIX
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "LoadBalancer", "selector": {"app": rolled.name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    kubectl.ok("apply", "-f", "-", stdin=manifest(service))

    def address() -> str:
        found = kubectl("get", "service", name, "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}")
        return found.out.strip() if found.ok else ""

    return f"http://{eventually(address, timeout=timeout, interval=POLL, what=f'{name} external address')}/"


def delete_load_balancer(kubectl: Kubectl, rolled: Rolled) -> None:
    kubectl("delete", "service", rolled.name + LB_SUFFIX, "--wait=false")


def haproxy_states(lab: Lab) -> dict[str, set[str]]:
    """What the lab cloud's haproxy says of each node (its servers are named after the nodes): the
    states of its servers over every load balancer (``UP``, ``DOWN``, ``no check``...), from its stats
    socket in the lab's cloud directory."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        sock.connect(str(lab.root / "cloud" / "haproxy.sock"))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode(errors="replace").splitlines()
    header = lines[0].lstrip("# ").split(",") if lines else []
    out: dict[str, set[str]] = {}
    if "svname" not in header or "status" not in header:
        return out
    name, state = header.index("svname"), header.index("status")
    for line in lines[1:]:
        cells = line.split(",")
        if len(cells) > max(name, state) and cells[name] not in ("FRONTEND", "BACKEND"):
            out.setdefault(cells[name], set()).add(cells[state].split(" ")[0])
    return out


class LoadBalancerWatch:
    """Notes when the cloud's haproxy takes ``node`` out (every server of it DOWN), seconds after ``start``."""

    def __init__(self, lab: Lab, node: str) -> None:
        self.lab, self.node = lab, node
        self.down_after: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lb-watch-{node}", daemon=True)

    def start(self) -> None:
        self.began = time.time()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                states = haproxy_states(self.lab).get(self.node, set())
            except OSError:
                continue
            if states and states <= {"DOWN"}:
                self.down_after = round(time.time() - self.began, 1)
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass(frozen=True)
class RolloutFigures:
    seconds: float  # from the new version until all its replicas are Ready and no old pod is left
    requests: Summary  # sent from the new version until then

    def describe(self) -> str:
        slow = self.requests
        return (
            f"rollout +{self.seconds:.1f}s; {slow.describe()}; {slow.over_1s} answered after more than 1 s,"
            f" the slowest in {slow.slowest_ms / 1000:.1f}s"
            + (
                f"; failed after {', '.join(f'{ms / 1000:.1f}s' for ms in slow.failed_after_ms[:10])}"
                if slow.failed
                else ""
            )
        )


def drained_rollout(rolled: Rolled, *, load: ServiceLoad, timeout: float = 600) -> RolloutFigures:
    """Roll ``rolled`` to a new version under ``load`` (already answering) with no fault; the figures
    once every old pod is gone and every request sent until then has come back."""
    rolled.next()
    began = time.time()
    rolled.wait(timeout, interval=POLL)
    ended = time.time()
    # open loop with a deadline: once a request sent after ended + deadline is back, all before it are
    eventually(
        lambda: any(s.t > ended + load.deadline for s in load.samples()),
        timeout=30 + load.deadline,
        interval=0.5,
        what="the last answers",
    )
    return RolloutFigures(round(ended - began, 1), load.summary(began, ended))


def _unit(lab: Lab, node: str, unit: str) -> dict[str, str]:
    done = lab.ssh(node, f"systemctl show -p MainPID -p ActiveState {unit}")
    return dict(line.split("=", 1) for line in done.out.splitlines() if "=" in line) if done.ok else {}


def running_containers(lab: Lab, node: str) -> dict[str, str]:
    """containerd's running tasks on ``node`` (the pods' containers): container id -> pid."""
    done = lab.ssh(node, "ctr -n k8s.io tasks ls")
    tasks = {}
    for line in done.out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "RUNNING":
            tasks[parts[0]] = parts[1]
    return tasks


def live_pod_uids(kubectl: Kubectl) -> set[str]:
    """The UIDs of the pods that exist and are not being deleted."""
    pods = kubectl.json("get", "pods", "-A")["items"]
    return {p["metadata"]["uid"] for p in pods if not p["metadata"].get("deletionTimestamp")}


def containers_kept(before: dict[str, str], after: dict[str, str], live: set[str]) -> bool:
    """Whether every container that ran before a kill still runs, the same process, unless its pod
    went meanwhile (a rollout in flight deletes old pods). The kubelet names a container
    ``PODUID_NAME_ATTEMPT``."""
    return all(after.get(cid) == pid for cid, pid in before.items() if cid.split("_", 1)[0] in live)


# every component the drills kill in turn (the registry only serves images)
KILLS = ("kubelet", "proxy", "containerd", "etcd", "apiserver", "scheduler", "controller-manager")


@dataclass(frozen=True)
class KillFigures:
    component: str
    node: str
    restarted: float  # the unit active again with a new main process
    ready: float  # every node Ready again and all replicas Running and Ready
    containers_kept: bool | None  # kubelet and containerd: the pods' containers ran on untouched
    began: float  # when the kill was sent (epoch seconds): the figures count from it

    def describe(self) -> str:
        kept = "" if self.containers_kept is None else f", containers {'kept' if self.containers_kept else 'LOST'}"
        return (
            f"kill {self.component} on {self.node}: restarted +{self.restarted:.1f}s,"
            f" nodes and replicas Ready +{self.ready:.1f}s{kept}"
        )


def kill(lab: Lab, kubectl: Kubectl, faults: Faults, rolled: Rolled, *, node: str, component: str) -> KillFigures:
    """SIGKILL ``component`` on ``node``; wait until systemd has restarted it, every node is Ready and
    all replicas of ``rolled`` are Running and Ready."""
    unit = unit_of(component)
    was = _unit(lab, node, unit)
    containers = running_containers(lab, node) if component in ("kubelet", "containerd") else None
    began = time.time()
    faults.kill(node, component)

    def back() -> bool:
        now = _unit(lab, node, unit)
        return now.get("ActiveState") == "active" and now.get("MainPID") not in ("0", was.get("MainPID"))

    eventually(back, timeout=180, interval=POLL, what=f"{unit} restarted by systemd on {node}")
    restarted = _since(began)
    eventually(lambda: all_nodes_ready(kubectl), timeout=300, interval=2, what="every node Ready")
    eventually(rolled.serving, timeout=300, interval=2, what=f"{REPLICAS} replicas of {rolled.name} Ready")
    kept = None
    if containers is not None:
        kept = containers_kept(containers, running_containers(lab, node), live_pod_uids(kubectl))
    return KillFigures(component, node, restarted, _since(began), kept, began)


def etcd_dump(lab: Lab) -> dict[str, dict[str, Any]]:
    """Every key in the lab's etcd: value, create and mod revision (``etcdctl get --prefix`` on the master,
    over TLS with the health check's client certificate, which only etcd's own CA signs)."""
    master = lab.master
    pki = "/etc/kubelab/pki"
    tls = f"--cacert {pki}/etcd-ca.crt --cert {pki}/etcd-healthcheck-client.crt --key {pki}/etcd-healthcheck-client.key"
    done = lab.ssh(
        master.name,
        f"etcdctl --endpoints https://{master.ip}:2379 {tls} --command-timeout=60s get '' --prefix -w json",
        timeout=120,
    )
    if not done.ok:
        raise RuntimeError(f"etcdctl on {master.name} failed: {done.err.strip()}")
    out = {}
    for kv in json.loads(done.out).get("kvs", []):
        out[base64.b64decode(kv["key"]).decode()] = {
            "value": base64.b64decode(kv.get("value", "")),
            "create": int(kv["create_revision"]),
            "mod": int(kv["mod_revision"]),
        }
    return out


def _churns(key: str, value: bytes) -> bool:
    """Objects the cluster deletes as it works: events, leases, and the drills' pods and ReplicaSets."""
    if "/events/" in key or "/leases/" in key:
        return True
    if "/pods/" in key or "/replicasets/" in key:
        return json.loads(value).get("metadata", {}).get("labels", {}).get("app") in (NAME, DRAINED)
    return False


def dump_damage(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> list[str]:
    """What is wrong with ``after`` given ``before`` (empty: nothing): an object nothing deletes that
    is gone or was created again, changed without a new revision, or a value that is not a whole object."""
    problems = []
    for key, old in before.items():
        if _churns(key, old["value"]):
            continue
        new = after.get(key)
        if new is None:
            problems.append(f"{key}: lost")
        elif new["create"] != old["create"]:
            problems.append(f"{key}: deleted and created again")
        elif new["mod"] < old["mod"] or (new["mod"] == old["mod"] and new["value"] != old["value"]):
            problems.append(f"{key}: changed without a new revision")
    for key, item in after.items():
        if not _whole(key, item["value"]):
            problems.append(f"{key}: not a whole object")
    return problems


def _whole(key: str, value: bytes) -> bool:
    """An API object has a name; a ClusterIP or NodePort reservation names the Service that holds it."""
    try:
        document = json.loads(value)
    except ValueError:
        return False
    if not isinstance(document, dict):
        return False
    if key.startswith(ALLOCATIONS):
        return bool(document.get("owner"))
    return bool(document.get("metadata", {}).get("name"))


def lasting(dump: dict[str, dict[str, Any]]) -> int:
    return sum(1 for key, item in dump.items() if not _churns(key, item["value"]))


# --- a StatefulSet's disk when its worker is powered off (non-graceful node shutdown) ----------------

STATEFUL = "vol"  # the volume drill's StatefulSet (one replica) and its pods' label
STATEFUL_CLAIM = f"data-{STATEFUL}-0"  # the claim its volumeClaimTemplate gives ordinal 0
# kube's taint for a node that is shut down (non-graceful node shutdown): an operator's step, for a machine
# known to be off; the pod garbage collector then force-deletes the pods terminating there and the
# attach/detach controller detaches their disks at once
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
OUT_OF_SERVICE_TAINT = f"{OUT_OF_SERVICE}=nodeshutdown:NoExecute"
TOKEN_FILE = "/data/token"

# The pod writes its own uid to the volume on its first start only (a pod finding the file keeps it), so a
# replacement reading back the first pod's uid proves the data came with the disk: a blank disk would get
# the new pod's own uid.
STATEFUL_MANIFEST = """
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {name}
spec:
  serviceName: {name}
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
      tolerations:
      - {{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: {toleration}}}
      - {{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: {toleration}}}
      containers:
      - name: main
        image: busybox:1.35.0
        command: [sh, -c, '[ -s {token} ] || {{ echo "$POD_UID" > {token} && sync; }}; exec sleep 86400']
        env:
        - name: POD_UID
          valueFrom: {{fieldRef: {{fieldPath: metadata.uid}}}}
        volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 64Mi}}}}
"""


@dataclass(frozen=True)
class VolumeFigures:
    """The volume drill's figures, seconds from the crash of ``node``."""

    node: str  # the worker powered off, which held the pod and its disk
    moved_to: str  # the node the new pod runs on
    detected: float  # the node's Ready condition no longer True
    evicted: float  # the pod marked for deletion (its toleration ran out)
    tainted: float  # the out-of-service taint applied (the operator's step, at once after the eviction)
    deleted: float  # the old pod gone from the API (the pod garbage collector's force deletion)
    scheduled: float  # a new pod bound to another node
    detached: float  # the disk's VolumeAttachment on the crashed node gone (force-detached)
    attached: float  # its VolumeAttachment on the new node attached
    running: float  # the new pod Running
    stuck: bool  # the evicted pod was still in the API (Terminating: no kubelet to confirm) when tainted
    written: str  # the token the first pod wrote (its uid)
    read_back: str  # what the new pod read from the volume

    def describe(self) -> str:
        data = "data kept" if self.written and self.read_back == self.written else f"DATA LOST ({self.read_back!r})"
        return (
            f"crash {self.node} with {STATEFUL}-0's disk: NotReady +{self.detected:.1f}s, evicted +{self.evicted:.1f}s,"
            f" out-of-service +{self.tainted:.1f}s, deleted +{self.deleted:.1f}s, on {self.moved_to}"
            f" +{self.scheduled:.1f}s, detached +{self.detached:.1f}s, attached +{self.attached:.1f}s,"
            f" Running +{self.running:.1f}s; {data}"
            + ("" if self.stuck else " (the pod was gone before the node was out of service)")
        )


def _stateful_pod(kubectl: Kubectl) -> dict[str, Any] | None:
    """The drill's pod (None while there is none or the API server does not answer)."""
    got = _get(kubectl, "pods", "-l", f"app={STATEFUL}")
    items = list(got["items"]) if got is not None else []
    return items[0] if items else None


def _attachments(kubectl: Kubectl, volume: str) -> list[dict[str, Any]] | None:
    """The VolumeAttachments of the PersistentVolume ``volume`` (None while the API server does not answer)."""
    got = _get(kubectl, "volumeattachments")
    if got is None:
        return None
    return [a for a in got["items"] if (a["spec"].get("source") or {}).get("persistentVolumeName") == volume]


def _token(kubectl: Kubectl, pod: str) -> str:
    done = kubectl("exec", pod, "--", "cat", TOKEN_FILE)
    return done.out.strip() if done.ok else ""


def _running(pod: dict[str, Any] | None, uid: str = "") -> dict[str, Any] | None:
    """``pod`` when it is Running, not being deleted, and (with ``uid``) another pod than that one."""
    if pod is None or pod["metadata"].get("deletionTimestamp") or pod["metadata"]["uid"] == uid:
        return None
    return pod if pod.get("status", {}).get("phase") == "Running" else None


def lose_volume_worker(lab: Lab, kubectl: Kubectl, faults: Faults) -> VolumeFigures:
    """The volume drill: a StatefulSet of one replica whose pod wrote a token to its claim's disk; the
    worker holding the pod and the disk is powered off. Once the pod is evicted (its toleration of
    :data:`TOLERATION` seconds ran out) the node is tainted out-of-service, as an operator does for a
    node known to be shut down (kube's non-graceful node shutdown). The figures follow the pod and the
    disk to the other worker; the new pod reads the token back. Always healed at the end: the taint
    removed, the worker booted, the StatefulSet and its claim deleted (the PersistentVolume and the cloud
    volume go by the class's reclaim policy, Delete)."""
    grace = float(lab.spec["node_grace_period"])
    kubectl.ok(
        "apply", "-f", "-", stdin=STATEFUL_MANIFEST.format(name=STATEFUL, toleration=TOLERATION, token=TOKEN_FILE)
    )
    crashed = ""  # the worker once it is powered off: healed at the end
    try:
        first = eventually(
            lambda: _running(_stateful_pod(kubectl)), timeout=300, interval=POLL, what=f"{STATEFUL}-0 Running"
        )
        pod, uid, node = first["metadata"]["name"], first["metadata"]["uid"], first["spec"]["nodeName"]
        written = eventually(lambda: _token(kubectl, pod), timeout=60, interval=POLL, what=f"the token of {pod}")
        volume = kubectl.json("get", "pvc", STATEFUL_CLAIM)["spec"]["volumeName"]

        began = time.time()
        faults.crash(node)
        crashed = node
        wait_not_ready(kubectl, node, grace=grace)
        detected = _since(began)

        def evicted() -> bool:
            found = _stateful_pod(kubectl)
            return found is None or found["metadata"]["uid"] != uid or bool(found["metadata"].get("deletionTimestamp"))

        eventually(evicted, timeout=grace + TOLERATION + 120, interval=POLL, what=f"{pod} evicted")
        was_evicted = _since(began)
        held = _stateful_pod(kubectl)
        stuck = held is not None and held["metadata"]["uid"] == uid
        kubectl.ok("taint", "nodes", node, OUT_OF_SERVICE_TAINT)
        tainted = _since(began)

        def deleted() -> bool:
            found = _stateful_pod(kubectl)
            return found is None or found["metadata"]["uid"] != uid

        eventually(deleted, timeout=120, interval=POLL, what=f"{pod} deleted from the API")
        was_deleted = _since(began)

        def scheduled() -> dict[str, Any] | None:
            found = _stateful_pod(kubectl)
            bound = found is not None and found["metadata"]["uid"] != uid and found["spec"].get("nodeName")
            return found if bound else None

        moved = eventually(scheduled, timeout=180, interval=POLL, what=f"a new {pod} scheduled")
        was_scheduled, moved_to = _since(began), moved["spec"]["nodeName"]
        marks: dict[str, float] = {}

        def settled() -> bool:
            attachments = _attachments(kubectl, volume)
            if attachments is None:
                return False
            if "detached" not in marks and not [a for a in attachments if a["spec"]["nodeName"] == node]:
                marks["detached"] = _since(began)
            there = [a for a in attachments if a["spec"]["nodeName"] == moved_to]
            if "attached" not in marks and there and (there[0].get("status") or {}).get("attached"):
                marks["attached"] = _since(began)
            return len(marks) == 2

        eventually(
            settled, timeout=300, interval=POLL, what=f"{volume} detached from {node} and attached to {moved_to}"
        )
        eventually(
            lambda: _running(_stateful_pod(kubectl), uid), timeout=300, interval=POLL, what=f"the new {pod} Running"
        )
        running = _since(began)
        read_back = _token(kubectl, pod)
        return VolumeFigures(
            node,
            moved_to,
            detected,
            was_evicted,
            tainted,
            was_deleted,
            was_scheduled,
            marks["detached"],
            marks["attached"],
            running,
            stuck,
            written,
            read_back,
        )
    finally:
        heal_volume_drill(kubectl, faults, crashed)


def heal_volume_drill(kubectl: Kubectl, faults: Faults, node: str, *, timeout: float = 300) -> None:
    """Undo the volume drill: the out-of-service taint removed (kube's last step of a non-graceful
    shutdown) and the worker ``node`` booted and Ready again (none: nothing was crashed), the
    StatefulSet and its claim deleted, and the claim's PersistentVolume gone (reclaim policy Delete: the
    cloud volume goes with it)."""
    if node:
        kubectl("taint", "nodes", node, f"{OUT_OF_SERVICE}-")  # fails only when the taint is not there
        faults.heal(node, wait=True)
    claim = _get(kubectl, "pvc", STATEFUL_CLAIM)
    volume = (claim or {}).get("spec", {}).get("volumeName", "")
    kubectl("delete", "statefulset", STATEFUL, "--ignore-not-found", "--wait=false")
    kubectl("delete", "pvc", STATEFUL_CLAIM, "--ignore-not-found", "--wait=false")
    if volume:
        eventually(lambda: not kubectl("get", "pv", volume).ok, timeout=timeout, interval=2, what=f"{volume} deleted")
