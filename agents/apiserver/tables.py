"""Server-side printing: the Table (meta.k8s.io/v1) that ``kubectl get`` renders.

Each resource has its columns (``-o wide`` ones carry priority 1) and a row function computing the
cells the way kubectl's built-in printers do, so ``kubectl get pods`` shows READY, STATUS, RESTARTS
and AGE as against kube-apiserver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agents.apiserver.kinds import autoscaling
from agents.apiserver.resources import Resource
from agents.machinery import quantity
from agents.machinery.objects import Object, parse_time
from agents.machinery.selectors import SelectorError, from_structured

Cells = list[Any]


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "string"
    description: str = ""
    priority: int = 0
    format: str = ""

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


NAME = Column("Name", format="name", description="Name must be unique within a namespace.")
AGE = Column(
    "Age", description="CreationTimestamp is a timestamp representing the server time when this object was created."
)


def human_duration(seconds: float) -> str:
    """Durations as kubectl prints them: 45s, 5m30s, 3h, 2d4h, 1y20d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y{rest}d" if rest else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None, now: datetime | None = None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        then = parse_time(timestamp)
    except ValueError:
        return "<unknown>"
    return human_duration(((now or datetime.now(UTC)) - then).total_seconds())


def _meta(obj: Object) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _created(obj: Object) -> str:
    return age(_meta(obj).get("creationTimestamp"))


def _containers(spec: dict[str, Any]) -> tuple[str, str]:
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)


def _selector(spec: dict[str, Any]) -> str:
    try:
        rendered = from_structured(spec.get("selector")).render()
    except SelectorError:
        return "<invalid>"
    return rendered or "<none>"


# --- pods ----------------------------------------------------------------------------------------


def _pod_row(obj: Object) -> Cells:
    spec, status, m = obj.get("spec") or {}, obj.get("status") or {}, _meta(obj)
    init_specs = spec.get("initContainers") or []
    # sidecars (init containers that restart Always) run beside the app's containers and count with them
    sidecars = {c.get("name") for c in init_specs if c.get("restartPolicy") == "Always"}
    total = len(spec.get("containers") or []) + len(sidecars)
    ready = 0
    restarts = 0
    last_restart: str | None = None
    reason = status.get("reason") or status.get("phase") or ""

    def note_restart(cs: dict[str, Any]) -> None:
        nonlocal last_restart
        finished = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        if finished and (last_restart is None or finished > last_restart):
            last_restart = finished

    initializing = False
    sidecar_restarts = 0
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        restarts += cs.get("restartCount", 0)
        if cs.get("restartCount"):
            note_restart(cs)
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if cs.get("name") in sidecars:
            sidecar_restarts += cs.get("restartCount", 0)
        if terminated and terminated.get("exitCode") == 0:
            continue
        if cs.get("name") in sidecars and cs.get("started"):  # a started sidecar does not hold the pod back
            ready += 1 if cs.get("ready") else 0
            continue
        if terminated:
            if terminated.get("reason"):
                reason = "Init:" + terminated["reason"]
            elif terminated.get("signal"):
                reason = f"Init:Signal:{terminated['signal']}"
            else:
                reason = f"Init:ExitCode:{terminated.get('exitCode')}"
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break
    initialized = any(
        c.get("type") == "Initialized" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    if not initializing or initialized:
        restarts = sidecar_restarts
        running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += cs.get("restartCount", 0)
            if cs.get("restartCount"):
                note_restart(cs)
            state = cs.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated:
                reason = (
                    f"Signal:{terminated['signal']}"
                    if terminated.get("signal")
                    else f"ExitCode:{terminated.get('exitCode')}"
                )
            elif cs.get("ready") and state.get("running") is not None:
                running = True
                ready += 1
        if reason == "Completed" and running:
            ready_condition = any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
            )
            reason = "Running" if ready_condition else "NotReady"
    if m.get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    restart_text = str(restarts)
    if restarts and last_restart:
        restart_text = f"{restarts} ({age(last_restart)} ago)"
    gates = spec.get("readinessGates") or []
    if gates:
        true_types = {c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"}
        gate_text = f"{sum(1 for g in gates if g.get('conditionType') in true_types)}/{len(gates)}"
    else:
        gate_text = "<none>"
    return [
        m.get("name", ""),
        f"{ready}/{total}",
        reason,
        restart_text,
        _created(obj),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gate_text,
    ]


_POD_COLUMNS = (
    NAME,
    Column("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
    Column("Status", description="The aggregate status of the containers in this pod."),
    Column(
        "Restarts",
        description="The number of times the containers in this pod have been restarted and when"
        " the last container in this pod has restarted.",
    ),
    AGE,
    Column("IP", priority=1, description="IP address allocated to the pod."),
    Column("Node", priority=1, description="Name of the Node this pod is bound to."),
    Column("Nominated Node", priority=1, description="Name of the node where the pod may be placed after preemption."),
    Column("Readiness Gates", priority=1, description="Pod readiness gates."),
)

# --- nodes ---------------------------------------------------------------------------------------


def _node_row(obj: Object) -> Cells:
    spec, status, m = obj.get("spec") or {}, obj.get("status") or {}, _meta(obj)
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    states = [{"True": "Ready", "False": "NotReady"}.get((ready or {}).get("status", ""), "Unknown")]
    if spec.get("unschedulable"):
        states.append("SchedulingDisabled")
    labels = m.get("labels") or {}
    roles = sorted(
        {k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/") and "/" in k}
        | ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role") else set())
    )
    addresses = status.get("addresses") or []

    def address(kind: str) -> str:
        return next((a.get("address", "") for a in addresses if a.get("type") == kind), "<none>")

    info = status.get("nodeInfo") or {}
    return [
        m.get("name", ""),
        ",".join(states),
        ",".join(r for r in roles if r) or "<none>",
        _created(obj),
        info.get("kubeletVersion", ""),
        address("InternalIP"),
        address("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


_NODE_COLUMNS = (
    NAME,
    Column("Status", description="The status of the node"),
    Column("Roles", description="The roles of the node"),
    AGE,
    Column("Version", description="Kubelet Version reported by the node."),
    Column("Internal-IP", priority=1, description="List of internal IPs."),
    Column("External-IP", priority=1, description="List of external IPs."),
    Column("OS-Image", priority=1, description="OS Image reported by the node from /etc/os-release."),
    Column("Kernel-Version", priority=1, description="Kernel Version reported by the node."),
    Column("Container-Runtime", priority=1, description="Container Runtime Version reported by the node."),
)

# --- workloads -----------------------------------------------------------------------------------

_CONTAINERS = Column("Containers", priority=1, description="Names of each container in the template.")
_IMAGES = Column("Images", priority=1, description="Images referenced by each container in the template.")
_SELECTOR = Column("Selector", priority=1, description="Label selector for pods.")


def _deployment_row(obj: Object) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(spec)
    return [
        _meta(obj).get("name", ""),
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _created(obj),
        names,
        images,
        _selector(spec),
    ]


_DEPLOYMENT_COLUMNS = (
    NAME,
    Column("Ready", description="Number of the pod with ready state"),
    Column(
        "Up-to-date",
        "integer",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    Column(
        "Available",
        "integer",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    _CONTAINERS,
    _IMAGES,
    _SELECTOR,
)


def _replicaset_row(obj: Object) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(spec)
    return [
        _meta(obj).get("name", ""),
        spec.get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        _created(obj),
        names,
        images,
        _selector(spec),
    ]


_REPLICASET_COLUMNS = (
    NAME,
    Column("Desired", "integer", "Replicas is the number of desired replicas."),
    Column("Current", "integer", "Replicas is the most recently observed number of replicas."),
    Column("Ready", "integer", "The number of ready replicas for this replica set."),
    AGE,
    _CONTAINERS,
    _IMAGES,
    _SELECTOR,
)


def _replicationcontroller_row(obj: Object) -> Cells:
    """A ReplicaSet's row; its selector is a plain label map, shown as the matchLabels it stands for."""
    spec = obj.get("spec") or {}
    return _replicaset_row({**obj, "spec": {**spec, "selector": {"matchLabels": spec.get("selector") or {}}}})


_REPLICATIONCONTROLLER_COLUMNS = (
    NAME,
    Column("Desired", "integer", "Replicas is the number of desired replicas."),
    Column("Current", "integer", "Replicas is the most recently observed number of replicas."),
    Column("Ready", "integer", "The number of ready replicas for this replication controller."),
    AGE,
    _CONTAINERS,
    _IMAGES,
    _SELECTOR,
)


def _statefulset_row(obj: Object) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(spec)
    return [
        _meta(obj).get("name", ""),
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        _created(obj),
        names,
        images,
    ]


_STATEFULSET_COLUMNS = (
    NAME,
    Column("Ready", description="Number of the pod with ready state"),
    AGE,
    _CONTAINERS,
    _IMAGES,
)


def _daemonset_row(obj: Object) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(spec)
    node_selector = ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    return [
        _meta(obj).get("name", ""),
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        ",".join(f"{k}={v}" for k, v in sorted(node_selector.items())) or "<none>",
        _created(obj),
        names,
        images,
        _selector(spec),
    ]


_DAEMONSET_COLUMNS = (
    NAME,
    Column("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
    Column("Current", "integer", "The number of nodes running at least one daemon pod and are supposed to."),
    Column(
        "Ready",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of"
        " the daemon pod running and ready.",
    ),
    Column("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod."),
    Column(
        "Available",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or"
        " more of the daemon pod running and available.",
    ),
    Column("Node Selector", description="NodeSelector is a selector which must be true for the pod to fit on a node."),
    AGE,
    _CONTAINERS,
    _IMAGES,
    _SELECTOR,
)


def _job_status(status: dict[str, Any], spec: dict[str, Any]) -> str:
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") in ("Complete", "Failed", "FailureTarget", "SuccessCriteriaMet"):
            return str(condition["type"])
        if condition.get("type") == "Suspended":
            return "Suspended"
    return "Suspended" if spec.get("suspend") else "Running"


def _job_row(obj: Object) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(spec)
    succeeded = status.get("succeeded", 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    duration = ""
    if status.get("startTime"):
        start = parse_time(status["startTime"])
        end = parse_time(status["completionTime"]) if status.get("completionTime") else datetime.now(UTC)
        duration = human_duration((end - start).total_seconds())
    return [
        _meta(obj).get("name", ""),
        _job_status(status, spec),
        completions,
        duration,
        _created(obj),
        names,
        images,
        _selector(spec),
    ]


_JOB_COLUMNS = (
    NAME,
    Column("Status", description="Status of the job."),
    Column("Completions", description="The desired number of successfully finished pods the job should be run with."),
    Column("Duration", description="Time required to complete the job."),
    AGE,
    _CONTAINERS,
    _IMAGES,
    _SELECTOR,
)


def _cronjob_row(obj: Object) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    names, images = _containers(job_spec)
    last = status.get("lastScheduleTime")
    return [
        _meta(obj).get("name", ""),
        spec.get("schedule", ""),
        spec.get("timeZone") or "<none>",
        "True" if spec.get("suspend") else "False",
        len(status.get("active") or []),
        age(last) if last else "<none>",
        _created(obj),
        names,
        images,
        _selector(job_spec),
    ]


_CRONJOB_COLUMNS = (
    NAME,
    Column("Schedule", description="The schedule in Cron format."),
    Column("Timezone", description="The time zone name for the given schedule."),
    Column("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions."),
    Column("Active", "integer", "A list of pointers to currently running jobs."),
    Column("Last Schedule", description="Information when was the last time the job was successfully scheduled."),
    AGE,
    _CONTAINERS,
    _IMAGES,
    _SELECTOR,
)

# --- networking ----------------------------------------------------------------------------------


def _service_row(obj: Object) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    kind = spec.get("type", "ClusterIP")
    external: list[str] = list(spec.get("externalIPs") or [])
    if kind == "LoadBalancer":
        ingress = [i.get("ip") or i.get("hostname") for i in (status.get("loadBalancer") or {}).get("ingress") or []]
        external = [e for e in ingress if e] + external
        external_text = ",".join(external) or "<pending>"
    elif kind == "ExternalName":
        external_text = spec.get("externalName", "")
    else:
        external_text = ",".join(external) or "<none>"
    ports = []
    for p in spec.get("ports") or []:
        ports.append(
            f"{p.get('port')}:{p['nodePort']}/{p.get('protocol', 'TCP')}"
            if p.get("nodePort")
            else f"{p.get('port')}/{p.get('protocol', 'TCP')}"
        )
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items())) or "<none>"
    return [
        _meta(obj).get("name", ""),
        kind,
        spec.get("clusterIP") or "<none>",
        external_text,
        ",".join(ports) or "<none>",
        _created(obj),
        selector,
    ]


_SERVICE_COLUMNS = (
    NAME,
    Column("Type", description="type determines how the Service is exposed."),
    Column("Cluster-IP", description="clusterIP is the IP address of the service."),
    Column(
        "External-IP",
        description="externalIPs is a list of IP addresses for which nodes in the cluster will"
        " also accept traffic for this service.",
    ),
    Column("Port(s)", description="The list of ports that are exposed by this service."),
    AGE,
    Column(
        "Selector",
        priority=1,
        description="Route service traffic to pods with label keys and values matching this selector.",
    ),
)


def _endpoints_row(obj: Object) -> Cells:
    listed: list[str] = []
    total = 0
    for subset in obj.get("subsets") or []:
        ports = subset.get("ports") or [{}]
        for address in subset.get("addresses") or []:
            for port in ports:
                total += 1
                if len(listed) < 3:
                    listed.append(f"{address.get('ip')}:{port['port']}" if port.get("port") else str(address.get("ip")))
    text = ",".join(listed) or "<none>"
    if total > len(listed):
        text += f" + {total - len(listed)} more..."
    return [_meta(obj).get("name", ""), text, _created(obj)]


_ENDPOINTS_COLUMNS = (NAME, Column("Endpoints", description="Endpoints is the list of endpoints."), AGE)


def _endpointslice_row(obj: Object) -> Cells:
    ports = ",".join(str(p.get("port", "")) for p in obj.get("ports") or []) or "<unset>"
    addresses = [a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
    text = ",".join(addresses[:3]) or "<unset>"
    if len(addresses) > 3:
        text += f" + {len(addresses) - 3} more..."
    return [_meta(obj).get("name", ""), obj.get("addressType", ""), ports, text, _created(obj)]


_ENDPOINTSLICE_COLUMNS = (
    NAME,
    Column("AddressType", description="Type of address carried by this EndpointSlice."),
    Column("Ports", description="Ports advertised by this EndpointSlice."),
    Column("Endpoints", description="Endpoints included in this EndpointSlice."),
    AGE,
)


def _ingress_hosts(rules: list[dict[str, Any]]) -> str:
    """The rules' hosts as kube's printer lists them: the first three named, ``*`` when no rule names one
    (and its count of the rest: the rules after the third, named or not)."""
    hosts: list[str] = []
    more = False
    for rule in rules:
        more = more or len(hosts) == 3
        if not more and rule.get("host"):
            hosts.append(rule["host"])
    if not hosts:
        return "*"
    text = ",".join(hosts)
    return f"{text} + {len(rules) - 3} more..." if more else text


def _ingress_row(obj: Object) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    entries = (status.get("loadBalancer") or {}).get("ingress") or []
    addresses = sorted({e.get("ip") or e.get("hostname") for e in entries if e.get("ip") or e.get("hostname")})
    return [
        _meta(obj).get("name", ""),
        spec.get("ingressClassName") or "<none>",
        _ingress_hosts(spec.get("rules") or []),
        ",".join(addresses),
        "80, 443" if spec.get("tls") else "80",
        _created(obj),
    ]


_INGRESS_COLUMNS = (
    NAME,
    Column("Class", description="The name of the IngressClass resource that should be used."),
    Column("Hosts", description="Hosts that incoming requests are matched against before the ingress rule"),
    Column("Address", description="Address is a list containing ingress points for the load-balancer"),
    Column("Ports", description="Ports of TLS configurations that open"),
    AGE,
)


def _ingressclass_row(obj: Object) -> Cells:
    spec = obj.get("spec") or {}
    params = spec.get("parameters")
    text = "<none>"
    if params:
        group = f".{params['apiGroup']}" if params.get("apiGroup") is not None else ""
        text = f"{params.get('kind', '')}{group}/{params.get('name', '')}"
    return [_meta(obj).get("name", ""), spec.get("controller", ""), text, _created(obj)]


_INGRESSCLASS_COLUMNS = (
    NAME,
    Column("Controller", description="Controller that is responsible for handling this class"),
    Column("Parameters", description="A reference to a resource with additional parameters"),
    AGE,
)

# --- storage -------------------------------------------------------------------------------------

_ACCESS_MODE_ABBREVIATIONS = (
    ("ReadWriteOnce", "RWO"),
    ("ReadOnlyMany", "ROX"),
    ("ReadWriteMany", "RWX"),
    ("ReadWriteOncePod", "RWOP"),
)


def access_modes(modes: Iterable[str] | None) -> str:
    """kube's GetAccessModesAsString: RWO,ROX,RWX,RWOP in that order, each once."""
    present = set(modes or ())
    return ",".join(short for mode, short in _ACCESS_MODE_ABBREVIATIONS if mode in present)


def _storage_quantity(resources: dict[str, Any] | None) -> str:
    value = (resources or {}).get("storage")
    if value is None:
        return "0"
    try:
        return quantity.canonical(value)
    except quantity.QuantityError:
        return str(value)


def _volume_class(obj: Object, spec: dict[str, Any]) -> str:
    """The class the beta annotation names, else ``spec.storageClassName``."""
    annotations = _meta(obj).get("annotations") or {}
    return str(annotations.get("volume.beta.kubernetes.io/storage-class", spec.get("storageClassName") or ""))


def _phase(obj: Object) -> str:
    return "Terminating" if _meta(obj).get("deletionTimestamp") else str((obj.get("status") or {}).get("phase", ""))


def _pv_row(obj: Object) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ref = spec.get("claimRef")
    claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else ""
    return [
        _meta(obj).get("name", ""),
        _storage_quantity(spec.get("capacity")),
        access_modes(spec.get("accessModes")),
        spec.get("persistentVolumeReclaimPolicy", ""),
        _phase(obj),
        claim,
        _volume_class(obj, spec),
        spec.get("volumeAttributesClassName") or "<unset>",
        status.get("reason", ""),
        _created(obj),
        spec.get("volumeMode") or "<unset>",
    ]


_PV_COLUMNS = (
    NAME,
    Column("Capacity", description="capacity is the description of the persistent volume's resources and capacity."),
    Column("Access Modes", description="accessModes contains all ways the volume can be mounted."),
    Column(
        "Reclaim Policy",
        description="persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from"
        " its claim.",
    ),
    Column("Status", description="phase indicates if a volume is available, bound to a claim, or released by a claim."),
    Column(
        "Claim",
        description="claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
    ),
    Column("StorageClass", description="StorageClass of the pv"),
    Column("VolumeAttributesClass", description="VolumeAttributesClass of the pv"),
    Column("Reason", description="reason is a brief CamelCase string that describes any failure."),
    AGE,
    Column(
        "VolumeMode",
        priority=1,
        description="volumeMode defines if a volume is intended to be used with a"
        " formatted filesystem or to remain in raw block state.",
    ),
)


def _pvc_row(obj: Object) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    volume = spec.get("volumeName") or ""
    capacity = _storage_quantity(status.get("capacity")) if volume else ""
    modes = access_modes(status.get("accessModes")) if volume else ""
    return [
        _meta(obj).get("name", ""),
        _phase(obj),
        volume,
        capacity,
        modes,
        _volume_class(obj, spec),
        spec.get("volumeAttributesClassName") or "<unset>",
        _created(obj),
        spec.get("volumeMode") or "<unset>",
    ]


_PVC_COLUMNS = (
    NAME,
    Column("Status", description="phase represents the current phase of PersistentVolumeClaim."),
    Column("Volume", description="volumeName is the binding reference to the PersistentVolume backing this claim."),
    Column("Capacity", description="capacity represents the actual resources of the underlying volume."),
    Column("Access Modes", description="accessModes contains the actual access modes the volume backing the PVC has."),
    Column("StorageClass", description="StorageClass of the pvc"),
    Column("VolumeAttributesClass", description="VolumeAttributesClass of the pvc"),
    AGE,
    Column("VolumeMode", priority=1, description="volumeMode defines what type of volume is required by the claim."),
)


def _storageclass_row(obj: Object) -> Cells:
    annotations = _meta(obj).get("annotations") or {}
    name = str(_meta(obj).get("name", ""))
    default_keys = ("storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class")
    if any(annotations.get(key) == "true" for key in default_keys):
        name += " (default)"
    return [
        name,
        obj.get("provisioner", ""),
        obj.get("reclaimPolicy") or "Delete",
        obj.get("volumeBindingMode") or "Immediate",
        bool(obj.get("allowVolumeExpansion", False)),
        _created(obj),
    ]


_STORAGECLASS_COLUMNS = (
    NAME,
    Column("Provisioner", description="Indicates the type of the provisioner."),
    Column("ReclaimPolicy", description="Indicates the type of the reclaim policy."),
    Column("VolumeBindingMode", description="Indicates the type of the volume binding mode."),
    Column("AllowVolumeExpansion", description="Indicates whether the storage class allow volume expand."),
    AGE,
)


def _volumeattachment_row(obj: Object) -> Cells:
    spec = obj.get("spec") or {}
    source = spec.get("source") or {}
    return [
        _meta(obj).get("name", ""),
        spec.get("attacher", ""),
        source.get("persistentVolumeName") or "",
        spec.get("nodeName", ""),
        bool((obj.get("status") or {}).get("attached", False)),
        _created(obj),
    ]


_VOLUMEATTACHMENT_COLUMNS = (
    NAME,
    Column(
        "Attacher",
        format="name",
        description="attacher indicates the name of the volume driver that MUST handle this request.",
    ),
    Column("PV", description="persistentVolumeName represents the name of the persistent volume to attach."),
    Column("Node", description="nodeName represents the node that the volume should be attached to."),
    Column("Attached", "boolean", "attached indicates the volume is successfully attached."),
    AGE,
)


def _csinode_row(obj: Object) -> Cells:
    return [_meta(obj).get("name", ""), len((obj.get("spec") or {}).get("drivers") or []), _created(obj)]


def _csidriver_row(obj: Object) -> Cells:
    spec = obj.get("spec") or {}
    tokens = spec.get("tokenRequests")
    audiences = ",".join(str((t or {}).get("audience", "")) for t in tokens) if tokens is not None else "<unset>"
    modes = ",".join(spec.get("volumeLifecycleModes") or []) or "<none>"
    return [
        _meta(obj).get("name", ""),
        spec.get("attachRequired", True) is not False,
        bool(spec.get("podInfoOnMount", False)),
        bool(spec.get("storageCapacity", False)),
        audiences,
        bool(spec.get("requiresRepublish", False)),
        modes,
        _created(obj),
    ]


_CSIDRIVER_COLUMNS = (
    NAME,
    Column(
        "AttachRequired", "boolean", "attachRequired indicates this CSI volume driver requires an attach operation."
    ),
    Column(
        "PodInfoOnMount",
        "boolean",
        "podInfoOnMount indicates this CSI volume driver requires additional pod"
        " information (like podName, podUID, etc.) during mount operations.",
    ),
    Column(
        "StorageCapacity",
        "boolean",
        "storageCapacity indicates that the CSI volume driver wants pod scheduling"
        " to consider the storage capacity that the driver deployment will report.",
    ),
    Column(
        "TokenRequests",
        description="tokenRequests indicates the CSI driver needs pods' service account tokens"
        " it is mounting volume for to do necessary authentication.",
    ),
    Column(
        "RequiresRepublish",
        "boolean",
        "requiresRepublish indicates the CSI driver wants `NodePublishVolume`"
        " being periodically called to reflect any possible change in the mounted volume.",
    ),
    Column("Modes", description="Modes indicates the lifecycle modes this driver supports."),
    AGE,
)

# --- events --------------------------------------------------------------------------------------


def _event_row(obj: Object) -> Cells:
    involved, source = obj.get("involvedObject") or {}, obj.get("source") or {}
    series = obj.get("series") or {}
    last = obj.get("lastTimestamp") or series.get("lastObservedTime") or obj.get("eventTime")
    first = obj.get("firstTimestamp") or obj.get("eventTime")
    source_text = source.get("component") or obj.get("reportingComponent") or ""
    if source.get("host"):
        source_text = f"{source_text}, {source['host']}"
    count = obj.get("count") or series.get("count") or 1
    return [
        age(last),
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        involved.get("fieldPath", ""),
        source_text,
        obj.get("message", ""),
        age(first),
        count,
        _meta(obj).get("name", ""),
    ]


_EVENT_COLUMNS = (
    Column("Last Seen", description="The time at which the most recent occurrence of this event was recorded."),
    Column("Type", description="Type of this event (Normal, Warning), new types could be added in the future."),
    Column(
        "Reason",
        description="This should be a short, machine understandable string that gives the reason"
        " for the transition into the object's current status.",
    ),
    Column("Object", description="The object that this event is about."),
    Column("Subobject", priority=1, description="The subobject (fieldPath) that this event is about."),
    Column("Source", priority=1, description="The component reporting this event."),
    Column("Message", description="A human-readable description of the status of this operation."),
    Column("First Seen", priority=1, description="The time at which the event was first recorded."),
    Column("Count", "integer", "The number of times this event has occurred.", priority=1),
    Column("Name", priority=1, format="name", description="Name must be unique within a namespace."),
)

# --- the rest ------------------------------------------------------------------------------------


def _namespace_row(obj: Object) -> Cells:
    return [_meta(obj).get("name", ""), (obj.get("status") or {}).get("phase", ""), _created(obj)]


def _configmap_row(obj: Object) -> Cells:
    return [_meta(obj).get("name", ""), len(obj.get("data") or {}) + len(obj.get("binaryData") or {}), _created(obj)]


def _secret_row(obj: Object) -> Cells:
    return [_meta(obj).get("name", ""), obj.get("type", ""), len(obj.get("data") or {}), _created(obj)]


def _serviceaccount_row(obj: Object) -> Cells:
    return [_meta(obj).get("name", ""), len(obj.get("secrets") or []), _created(obj)]


def _lease_row(obj: Object) -> Cells:
    return [_meta(obj).get("name", ""), (obj.get("spec") or {}).get("holderIdentity") or "", _created(obj)]


def _binding_row(obj: Object) -> Cells:
    ref = obj.get("roleRef") or {}
    subjects = obj.get("subjects") or []

    def named(kind: str) -> str:
        return ", ".join(
            (f"{s.get('namespace', '')}/{s.get('name', '')}" if kind == "ServiceAccount" else str(s.get("name", "")))
            for s in subjects
            if s.get("kind") == kind
        )

    return [
        _meta(obj).get("name", ""),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        _created(obj),
        named("User"),
        named("Group"),
        named("ServiceAccount"),
    ]


_BINDING_COLUMNS = (
    NAME,
    Column("Role", description="The role the binding grants"),
    AGE,
    Column("Users", priority=1, description="Users in the binding"),
    Column("Groups", priority=1, description="Groups in the binding"),
    Column("ServiceAccounts", priority=1, description="ServiceAccounts in the binding"),
)


def _csr_row(obj: Object) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    states = [str(c.get("type", "")) for c in status.get("conditions") or [] if c.get("status", "True") == "True"]
    if status.get("certificate"):
        states.append("Issued")
    seconds = spec.get("expirationSeconds")
    return [
        _meta(obj).get("name", ""),
        _created(obj),
        spec.get("signerName", ""),
        spec.get("username", ""),
        human_duration(seconds) if isinstance(seconds, int) else "<none>",
        ",".join(states) or "Pending",
    ]


_CSR_COLUMNS = (
    NAME,
    AGE,
    Column("SignerName", description="Requested signer for the request"),
    Column("Requestor", description="Name of the user who requested the certificate"),
    Column("RequestedDuration", description="Requested duration of the issued certificate"),
    Column("Condition", description="State of the request"),
)


def _apiservice_row(obj: Object) -> Cells:
    spec = obj.get("spec") or {}
    service = spec.get("service")
    where = f"{service.get('namespace', '')}/{service.get('name', '')}" if isinstance(service, dict) else "Local"
    conditions = (obj.get("status") or {}).get("conditions") or []
    found = next((c for c in conditions if c.get("type") == "Available"), None)
    available = "Unknown"
    if found is not None:
        available = str(found.get("status", "Unknown"))
        if available != "True":
            available += f" ({found.get('reason', '')})"
    return [_meta(obj).get("name", ""), where, available, _created(obj)]


_APISERVICE_COLUMNS = (
    NAME,
    Column("Service", description="The reference to the service that hosts this API endpoint."),
    Column("Available", description="Whether this service is available."),
    AGE,
)


def _hpa_row(obj: Object) -> Cells:
    if obj.get("apiVersion") == autoscaling.V1:  # a v1 view: printed as the object it stands for
        obj = autoscaling.to_v2(obj)
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    low = spec.get("minReplicas")
    return [
        _meta(obj).get("name", ""),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        autoscaling.targets(obj),
        str(low) if low is not None else "<unset>",
        spec.get("maxReplicas", 0),
        status.get("currentReplicas", 0),
        _created(obj),
    ]


_HPA_COLUMNS = (
    NAME,
    Column("Reference", description="reference to scaled resource (through its Scale subresource)"),
    Column("Targets", description="the specifications for which to use to calculate the desired replica count"),
    Column("MinPods", description="the lower limit for the number of pods that can be set by the autoscaler"),
    Column("MaxPods", "integer", "the upper limit for the number of pods that can be set by the autoscaler"),
    Column("Replicas", "integer", "current number of replicas of pods managed by this autoscaler"),
    AGE,
)


def _pdb_row(obj: Object) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    low, high = spec.get("minAvailable"), spec.get("maxUnavailable")
    return [
        _meta(obj).get("name", ""),
        "N/A" if low is None else str(low),
        "N/A" if high is None else str(high),
        status.get("disruptionsAllowed", 0),
        _created(obj),
    ]


_PDB_COLUMNS = (
    NAME,
    Column("Min Available", description="The minimum number of pods that must be available"),
    Column("Max Unavailable", description="The maximum number of pods that may be unavailable"),
    Column("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time"),
    AGE,
)


def _controllerrevision_row(obj: Object) -> Cells:
    owner = next((r for r in _meta(obj).get("ownerReferences") or [] if r.get("controller")), None)
    controller = "<none>"
    if owner:
        group = owner.get("apiVersion", "").split("/")[0] if "/" in owner.get("apiVersion", "") else ""
        kind = owner.get("kind", "").lower() + (f".{group}" if group else "")
        controller = f"{kind}/{owner.get('name', '')}"
    return [_meta(obj).get("name", ""), controller, obj.get("revision", 0), _created(obj)]


def _default_row(obj: Object) -> Cells:
    return [_meta(obj).get("name", ""), _meta(obj).get("creationTimestamp", "")]


@dataclass(frozen=True)
class Printer:
    columns: Sequence[Column]
    row: Callable[[Object], Cells]


PRINTERS: dict[str, Printer] = {
    "pods": Printer(_POD_COLUMNS, _pod_row),
    "nodes": Printer(_NODE_COLUMNS, _node_row),
    "deployments.apps": Printer(_DEPLOYMENT_COLUMNS, _deployment_row),
    "replicasets.apps": Printer(_REPLICASET_COLUMNS, _replicaset_row),
    "replicationcontrollers": Printer(_REPLICATIONCONTROLLER_COLUMNS, _replicationcontroller_row),
    "statefulsets.apps": Printer(_STATEFULSET_COLUMNS, _statefulset_row),
    "daemonsets.apps": Printer(_DAEMONSET_COLUMNS, _daemonset_row),
    "jobs.batch": Printer(_JOB_COLUMNS, _job_row),
    "horizontalpodautoscalers.autoscaling": Printer(_HPA_COLUMNS, _hpa_row),
    "poddisruptionbudgets.policy": Printer(_PDB_COLUMNS, _pdb_row),
    "cronjobs.batch": Printer(_CRONJOB_COLUMNS, _cronjob_row),
    "services": Printer(_SERVICE_COLUMNS, _service_row),
    "endpoints": Printer(_ENDPOINTS_COLUMNS, _endpoints_row),
    "endpointslices.discovery.k8s.io": Printer(_ENDPOINTSLICE_COLUMNS, _endpointslice_row),
    "ingresses.networking.k8s.io": Printer(_INGRESS_COLUMNS, _ingress_row),
    "ingressclasses.networking.k8s.io": Printer(_INGRESSCLASS_COLUMNS, _ingressclass_row),
    "events": Printer(_EVENT_COLUMNS, _event_row),
    "persistentvolumes": Printer(_PV_COLUMNS, _pv_row),
    "persistentvolumeclaims": Printer(_PVC_COLUMNS, _pvc_row),
    "storageclasses.storage.k8s.io": Printer(_STORAGECLASS_COLUMNS, _storageclass_row),
    "volumeattachments.storage.k8s.io": Printer(_VOLUMEATTACHMENT_COLUMNS, _volumeattachment_row),
    "csinodes.storage.k8s.io": Printer(
        (NAME, Column("Drivers", "integer", "Drivers indicates the number of CSI drivers registered on the node"), AGE),
        _csinode_row,
    ),
    "csidrivers.storage.k8s.io": Printer(_CSIDRIVER_COLUMNS, _csidriver_row),
    "namespaces": Printer((NAME, Column("Status", description="The status of the namespace"), AGE), _namespace_row),
    "configmaps": Printer((NAME, Column("Data", "integer", "Number of data entries."), AGE), _configmap_row),
    "secrets": Printer(
        (
            NAME,
            Column("Type", description="The type of the secret"),
            Column("Data", "integer", "Number of data entries."),
            AGE,
        ),
        _secret_row,
    ),
    "serviceaccounts": Printer((NAME, Column("Secrets", "integer", "Number of secrets."), AGE), _serviceaccount_row),
    "leases.coordination.k8s.io": Printer(
        (NAME, Column("Holder", description="The holder of the lease"), AGE), _lease_row
    ),
    "rolebindings.rbac.authorization.k8s.io": Printer(_BINDING_COLUMNS, _binding_row),
    "clusterrolebindings.rbac.authorization.k8s.io": Printer(_BINDING_COLUMNS, _binding_row),
    "certificatesigningrequests.certificates.k8s.io": Printer(_CSR_COLUMNS, _csr_row),
    "apiservices.apiregistration.k8s.io": Printer(_APISERVICE_COLUMNS, _apiservice_row),
    "controllerrevisions.apps": Printer(
        (
            NAME,
            Column("Controller", description="Controller of the object"),
            Column("Revision", "integer", "Revision of the ControllerRevision"),
            AGE,
        ),
        _controllerrevision_row,
    ),
}
DEFAULT_PRINTER = Printer((NAME, Column("Created At", "date", "CreationTimestamp of the object.")), _default_row)


def printer_key(resource: Resource) -> str:
    """Where ``PRINTERS`` keeps a resource's printer: by kind (``plural.group``), and a custom kind's
    by version too (each version of a definition has its own columns)."""
    return f"{resource.version}.{resource.qualified}" if resource.custom else resource.qualified


def printer_for(key: str) -> Printer:
    return PRINTERS.get(key, DEFAULT_PRINTER)


def row_object(obj: Object, include: str) -> Object | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def table(
    key: str,
    objs: Iterable[Object],
    *,
    include: str = "Metadata",
    headers: bool = True,
    list_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    printer = printer_for(key)
    rows = []
    for obj in objs:
        row: dict[str, Any] = {"cells": printer.row(obj)}
        attached = row_object(obj, include)
        if attached is not None:
            row["object"] = attached
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta or {},
        "columnDefinitions": [c.definition() for c in printer.columns] if headers else [],
        "rows": rows,
    }
