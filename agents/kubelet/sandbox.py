"""Pod sandboxes: one network namespace per pod, wired by CNI, that all the pod's containers join.

A sandbox is a named network namespace (``/run/netns/<prefix><pod uid>``, made as ``ip netns add``
makes one, with ``lo`` up: :mod:`agents.kubelet.namespaces`; it shows up in ``ip netns list`` on the
node) into which the CNI chain puts ``eth0`` (bridge + host-local, then portmap for hostPorts). Every
container of the pod is started in that namespace, so they share one IP and one localhost.

The kubelet keeps one state file per sandbox in its own directory, holding the pod, the hostPorts and
the ADD result: DEL needs both (portmap removes its rules by them, the spec passes the ADD result
back as ``prevResult``), and a restarted kubelet adopts the sandboxes whose file and namespace are
both still there (``existing``). Anything half made (a file without a result, a file whose namespace
vanished, a namespace with our prefix but no file) is reported by ``stale`` and undone by ``remove``.

Both operations are idempotent: ``ensure`` on a sandbox that exists returns it, ``remove`` of one that
does not exist succeeds. A failed ADD is undone (DEL, namespace deleted, file dropped) before the error
propagates. Callers serialise the operations of one pod (the kubelet's work queue never works on one
key twice at once).

Network namespaces are not nested, so pod namespaces are made in the kubelet's own mount namespace
even when the CNI plugins run inside a node namespace (``CniClient(node_netns=...)``): only the
plugins' side of the wiring (bridge, host veth ends, portmap rules) has to be in the node namespace.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any, TypedDict, cast

from agents.kubelet.cni import (
    Attachment,
    BridgeNetwork,
    CniClient,
    CniResult,
    PodRef,
    PortMapping,
    bridge_conflist,
    cni_args,
    pod_ip,
    runtime_config,
)
from agents.kubelet.errors import KubeletError, SandboxError
from agents.kubelet.namespaces import add_netns, delete_netns
from agents.machinery import tracing

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")  # where `ip netns` keeps named network namespaces
NETNS_PREFIX = "kl-pod-"


@dataclass(frozen=True)
class Sandbox:
    """A pod's wired network namespace."""

    pod: PodRef
    netns: str  # the namespace's name, as in `ip netns list`
    ip: IPv4Address | IPv6Address
    port_mappings: tuple[PortMapping, ...]
    result: CniResult

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns


class _PortRecord(TypedDict):
    hostPort: int
    containerPort: int
    protocol: str
    hostIP: str


class _Record(TypedDict):
    """The state file of one sandbox: ``<state_dir>/<pod uid>.json``."""

    namespace: str
    name: str
    uid: str
    netns: str
    portMappings: list[_PortRecord]
    result: CniResult | None  # None until ADD has succeeded


class SandboxManager:
    """Creates, lists and removes the pod sandboxes of this kubelet."""

    def __init__(
        self,
        *,
        cni: CniClient,
        network: BridgeNetwork,
        state_dir: Path,
        netns_prefix: str = NETNS_PREFIX,
    ) -> None:
        self.cni = cni
        self.network = network
        self.state_dir = state_dir
        self.netns_prefix = netns_prefix
        self._conflist = bridge_conflist(network)

    def netns_name(self, uid: str) -> str:
        return f"{self.netns_prefix}{uid}"

    # --- operations ------------------------------------------------------------------------------

    async def ensure(self, pod: PodRef, *, port_mappings: tuple[PortMapping, ...] = ()) -> Sandbox:
        """The pod's sandbox, created (netns, CNI ADD) unless it already exists."""
        record = self._read(pod.uid)
        netns = self.netns_name(pod.uid)
        if record is not None and record["result"] is not None and _netns_exists(netns):
            return _sandbox(record)
        if record is not None or _netns_exists(netns):
            log.info("sandbox %s/%s: half made or lost, starting over", pod.namespace, pod.name)
            await self.remove(pod.uid)

        record = {
            "namespace": pod.namespace,
            "name": pod.name,
            "uid": pod.uid,
            "netns": netns,
            "portMappings": [_port_record(m) for m in port_mappings],
            "result": None,
        }
        self._write(record)  # first, so that a crash from here on leaves a trace `stale` finds
        attachment = self._attachment(pod, netns)
        try:
            await _add_netns(netns)
            with tracing.child("network", tracer_name="kubelet") as span:
                result = await self.cni.add(self._conflist, attachment, runtime=runtime_config(port_mappings))
                record["result"] = result
                sandbox = _sandbox(record)
                span.set_attribute("k8s.pod.ip", str(sandbox.ip))
        except KubeletError:
            await self._undo_failed_add(record, attachment)
            raise
        self._write(record)
        log.info("sandbox %s/%s: netns %s, IP %s", pod.namespace, pod.name, netns, sandbox.ip)
        return sandbox

    async def remove(self, uid: str) -> None:
        """CNI DEL, then delete the namespace and the state file; nothing to do is success."""
        record = self._read(uid)
        netns = record["netns"] if record is not None else self.netns_name(uid)
        present = _netns_exists(netns)
        if record is None and not present:
            return
        pod = _pod(record) if record is not None else PodRef(namespace="", name="", uid=uid)
        mappings = _mappings(record) if record is not None else ()
        attachment = self._attachment(pod, netns)
        await self.cni.delete(
            self._conflist,
            attachment,
            prev_result=record["result"] if record is not None else None,
            runtime=runtime_config(mappings),
        )
        if present:
            _delete_netns(netns)
        self._forget(uid)
        log.info("sandbox %s/%s: removed netns %s", pod.namespace, pod.name or uid, netns)

    async def check(self, uid: str) -> None:
        """CNI CHECK: raise ``CniError`` if the sandbox is no longer wired as ADD left it.

        Debian 12's portmap (containernetworking-plugins 1.1.1) fails CHECK for IPv4-only pods that
        have hostPorts, looking for ip6tables rules it never made (containernetworking/plugins#819);
        so the kubelet does not CHECK on every sync, only when asked to.
        """
        record = self._read(uid)
        if record is None or record["result"] is None:
            raise SandboxError(f"pod {uid} has no sandbox")
        attachment = self._attachment(_pod(record), record["netns"])
        await self.cni.check(
            self._conflist,
            attachment,
            prev_result=record["result"],
            runtime=runtime_config(_mappings(record)),
        )

    def existing(self) -> list[Sandbox]:
        """The complete sandboxes this kubelet owns: what a restarted kubelet adopts."""
        out = []
        for record in self._records():
            if record["result"] is not None and _netns_exists(record["netns"]):
                out.append(_sandbox(record))
        return sorted(out, key=lambda s: s.pod.uid)

    def stale(self) -> list[str]:
        """Pod UIDs whose sandbox is half made or half gone; ``remove`` cleans each of them."""
        uids = set()
        recorded = set()
        for record in self._records():
            recorded.add(record["netns"])
            if record["result"] is None or not _netns_exists(record["netns"]):
                uids.add(record["uid"])
        if NETNS_DIR.is_dir():
            for entry in NETNS_DIR.iterdir():
                if entry.name.startswith(self.netns_prefix) and entry.name not in recorded:
                    uids.add(entry.name.removeprefix(self.netns_prefix))
        return sorted(uids)

    # --- helpers ---------------------------------------------------------------------------------

    def _attachment(self, pod: PodRef, netns: str) -> Attachment:
        # the pod UID is unique and made of [0-9a-f-], as the spec wants of a container ID
        return Attachment(container_id=pod.uid, netns=str(NETNS_DIR / netns), args=cni_args(pod, pod.uid))

    async def _undo_failed_add(self, record: _Record, attachment: Attachment) -> None:
        """The spec asks for a DEL after a failed ADD; the namespace and the file go too."""
        try:
            await self.cni.delete(self._conflist, attachment, runtime=runtime_config(_mappings(record)))
        except KubeletError as exc:
            log.warning("sandbox %s/%s: DEL after a failed ADD: %s", record["namespace"], record["name"], exc)
        try:
            _delete_netns(record["netns"])
        except SandboxError as exc:
            log.warning("sandbox %s/%s: %s", record["namespace"], record["name"], exc)
        self._forget(record["uid"])

    def _path(self, uid: str) -> Path:
        if not uid or "/" in uid or uid.startswith("."):
            raise SandboxError(f"invalid pod UID {uid!r}")
        return self.state_dir / f"{uid}.json"

    def _read(self, uid: str) -> _Record | None:
        path = self._path(uid)
        try:
            return _parse_record(path.read_text(), path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SandboxError(f"cannot read {path}: {exc.strerror}") from exc

    def _records(self) -> list[_Record]:
        if not self.state_dir.is_dir():
            return []
        out = []
        for path in sorted(self.state_dir.glob("*.json")):
            try:
                out.append(_parse_record(path.read_text(), path))
            except (OSError, SandboxError) as exc:
                log.warning("ignoring sandbox state %s: %s", path, exc)
        return out

    def _write(self, record: _Record) -> None:
        path = self._path(record["uid"])
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
            tmp.replace(path)
        except OSError as exc:
            raise SandboxError(f"cannot write {path}: {exc.strerror}") from exc

    def _forget(self, uid: str) -> None:
        path = self._path(uid)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise SandboxError(f"cannot remove {path}: {exc.strerror}") from exc


def _parse_record(text: str, path: Path) -> _Record:
    try:
        document: Any = json.loads(text)
    except ValueError as exc:
        raise SandboxError(f"{path} is not JSON") from exc
    keys = ("namespace", "name", "uid", "netns", "portMappings", "result")
    if not isinstance(document, dict) or any(key not in document for key in keys):
        raise SandboxError(f"{path} is not a sandbox state file")
    return cast(_Record, document)  # its keys are checked just above


def _port_record(mapping: PortMapping) -> _PortRecord:
    return {
        "hostPort": mapping.host_port,
        "containerPort": mapping.container_port,
        "protocol": mapping.protocol,
        "hostIP": mapping.host_ip,
    }


def _mappings(record: _Record) -> tuple[PortMapping, ...]:
    return tuple(
        PortMapping(
            host_port=int(p["hostPort"]),
            container_port=int(p["containerPort"]),
            protocol=str(p["protocol"]),
            host_ip=str(p.get("hostIP", "")),
        )
        for p in record["portMappings"]
    )


def _pod(record: _Record) -> PodRef:
    return PodRef(namespace=record["namespace"], name=record["name"], uid=record["uid"])


def _sandbox(record: _Record) -> Sandbox:
    result = record["result"]
    if result is None:
        raise SandboxError(f"pod {record['uid']}: the sandbox has no CNI result yet")
    return Sandbox(
        pod=_pod(record),
        netns=record["netns"],
        ip=pod_ip(result),
        port_mappings=_mappings(record),
        result=result,
    )


def _netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


async def _add_netns(name: str) -> None:
    try:
        await add_netns(NETNS_DIR / name)
    except OSError as exc:
        raise SandboxError(f"cannot create network namespace {name}: {exc.strerror or exc}") from exc


def _delete_netns(name: str) -> None:
    try:
        delete_netns(NETNS_DIR / name)
    except OSError as exc:
        raise SandboxError(f"cannot delete network namespace {name}: {exc.strerror or exc}") from exc
