"""A small CNI client: the kubelet wires pod sandboxes by executing the CNI plugins itself.

It follows the CNI specification (1.0.0; Debian 12's containernetworking-plugins 1.1.1 answer
``CNI_COMMAND=VERSION`` with 0.1.0 to 1.0.0): a network configuration *list* whose plugins run in
order on ADD, each receiving the previous plugin's result as ``prevResult``, and in reverse order on
DEL; CHECK runs in order with the ADD result. Every plugin gets its own configuration with the list's
``name`` and ``cniVersion`` injected and, from the runtime's ``runtimeConfig``, only the capabilities it
declares (so only ``portmap`` sees ``portMappings``). The environment carries ``CNI_COMMAND``,
``CNI_CONTAINERID``, ``CNI_NETNS``, ``CNI_IFNAME``, ``CNI_PATH`` and ``CNI_ARGS``.

Where the configuration comes from. The kubelet builds the list in code (``bridge_conflist``), the way
kubenet did: the node's podCIDR is known only at run time (the node IPAM controller assigns it), the
result is checked by mypy, and no template directory has to be shipped inside the agents' package
(nor may agents import the provisioner's renderer). The same list is also shipped as
``templates/cni/10-kubelab.conflist.j2`` so the VM lab has a real ``/etc/cni/net.d`` file to look at
and to drive ``cnitool`` with; a unit test renders that template and compares it with
``bridge_conflist``, so the two cannot drift apart.

The pure parts (the list, the per-plugin configuration, ``runtimeConfig`` from a pod spec, the pod IP
from a result, a plugin's error) are plain functions; ``CniClient`` only executes. With ``node_netns``
set, every plugin runs under ``ip netns exec NODE``: the bridge, the host end of each veth and the
portmap rules then live in that namespace, which is how the local driver and the tests keep the
host's own namespace untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast

from agents.kubelet.errors import CNI_TRY_AGAIN_LATER, CniError, CniTemporaryError

log = logging.getLogger(__name__)

CNI_VERSION = "1.0.0"
PLUGIN_DIR = Path("/usr/lib/cni")
POD_IFNAME = "eth0"
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# --- wire shapes ---------------------------------------------------------------------------------


class NetworkConfigList(TypedDict):
    """A network configuration list (``*.conflist``)."""

    cniVersion: str
    name: str
    plugins: list[dict[str, Any]]


class ResultInterface(TypedDict):
    name: str
    mac: NotRequired[str]
    sandbox: NotRequired[str]


class ResultIP(TypedDict):
    address: str  # CIDR notation: 10.244.7.2/24
    interface: NotRequired[int]  # index into interfaces
    gateway: NotRequired[str]
    version: NotRequired[str]  # 0.3.x/0.4.0 only


class CniResult(TypedDict, total=False):
    """What ADD prints on success (and what DEL and CHECK receive back as ``prevResult``)."""

    cniVersion: str
    interfaces: list[ResultInterface]
    ips: list[ResultIP]
    routes: list[dict[str, Any]]
    dns: dict[str, Any]


class PortMappingEntry(TypedDict):
    """One entry of the ``portMappings`` capability, as the portmap plugin reads it."""

    hostPort: int
    containerPort: int
    protocol: str
    hostIP: NotRequired[str]


# --- domain values -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BridgeNetwork:
    """The pod network of one node: a Linux bridge, addresses from the node's podCIDR."""

    subnet: IPv4Network  # the node's podCIDR
    data_dir: Path  # host-local's dataDir: a directory the kubelet owns, not /var/lib/cni
    name: str = "kubelab"
    bridge: str = "kubelab0"


@dataclass(frozen=True)
class PortMapping:
    """A container port published on the node (a pod's ``hostPort``)."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""


@dataclass(frozen=True)
class PodRef:
    """Which pod a sandbox belongs to, for ``CNI_ARGS``."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class Attachment:
    """The spec's attachment key: one container (sandbox), one namespace, one interface name."""

    container_id: str
    netns: str  # path, e.g. /run/netns/kl-pod-<uid>
    ifname: str = POD_IFNAME
    args: str = ""  # CNI_ARGS


# --- pure parts ----------------------------------------------------------------------------------


def bridge_conflist(network: BridgeNetwork) -> NetworkConfigList:
    """The node's network configuration list: bridge with host-local IPAM, then portmap."""
    return {
        "cniVersion": CNI_VERSION,
        "name": network.name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": network.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(network.subnet)}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(network.data_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }


def loopback_conflist() -> NetworkConfigList:
    """The list that brings ``lo`` up in a sandbox, so the pod's containers share a localhost."""
    return {"cniVersion": CNI_VERSION, "name": "cni-loopback", "plugins": [{"type": "loopback"}]}


def port_mappings(pod_spec: Mapping[str, Any]) -> tuple[PortMapping, ...]:
    """The ``hostPort``s the pod's containers ask for; none for a pod on the host's network."""
    if pod_spec.get("hostNetwork"):
        return ()
    found: dict[tuple[int, str, str], PortMapping] = {}
    for container in pod_spec.get("containers") or ():
        for port in container.get("ports") or ():
            host_port = int(port.get("hostPort") or 0)
            if host_port <= 0:
                continue
            mapping = PortMapping(
                host_port=host_port,
                container_port=int(port["containerPort"]),
                protocol=str(port.get("protocol") or "TCP").lower(),
                host_ip=str(port.get("hostIP") or ""),
            )
            found.setdefault((mapping.host_port, mapping.protocol, mapping.host_ip), mapping)
    return tuple(sorted(found.values(), key=lambda m: (m.host_port, m.protocol, m.host_ip)))


def runtime_config(mappings: Sequence[PortMapping]) -> dict[str, Any]:
    """The runtime's capability arguments: ``portMappings`` in the portmap plugin's shape."""
    entries: list[PortMappingEntry] = []
    for m in mappings:
        entry: PortMappingEntry = {"hostPort": m.host_port, "containerPort": m.container_port, "protocol": m.protocol}
        if m.host_ip:
            entry["hostIP"] = m.host_ip
        entries.append(entry)
    return {"portMappings": entries}


def cni_args(pod: PodRef, container_id: str) -> str:
    """``CNI_ARGS`` as kubelets pass them; ``IgnoreUnknown`` keeps strict plugins from refusing them."""
    pairs = [
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", pod.namespace),
        ("K8S_POD_NAME", pod.name),
        ("K8S_POD_INFRA_CONTAINER_ID", container_id),
        ("K8S_POD_UID", pod.uid),
    ]
    return ";".join(f"{key}={value}" for key, value in pairs)


def plugin_config(
    network: NetworkConfigList,
    index: int,
    *,
    runtime: Mapping[str, Any],
    prev_result: CniResult | None,
) -> dict[str, Any]:
    """The configuration plugin ``index`` of the list receives on stdin."""
    config = dict(network["plugins"][index])
    config["cniVersion"] = network["cniVersion"]
    config["name"] = network["name"]
    capabilities = config.get("capabilities") or {}
    wanted = {key: value for key, value in runtime.items() if capabilities.get(key)}
    if wanted:
        config["runtimeConfig"] = wanted
    if prev_result is not None:
        config["prevResult"] = prev_result
    return config


def pod_ips(result: CniResult, *, ifname: str = POD_IFNAME) -> tuple[IPv4Address | IPv6Address, ...]:
    """The addresses the result gives the sandbox's ``ifname``; IPs tied to no interface count too."""
    interfaces = result.get("interfaces") or []
    out: list[IPv4Address | IPv6Address] = []
    for entry in result.get("ips") or []:
        index = entry.get("interface")
        if index is not None:
            if not 0 <= index < len(interfaces):
                continue
            interface = interfaces[index]
            if interface.get("name") != ifname or not interface.get("sandbox"):
                continue
        out.append(ipaddress.ip_interface(entry["address"]).ip)
    return tuple(out)


def pod_ip(result: CniResult, *, ifname: str = POD_IFNAME) -> IPv4Address | IPv6Address:
    """The pod's IP: the first IPv4 address of ``ifname`` (else its first IPv6 address)."""
    found = pod_ips(result, ifname=ifname)
    if not found:
        raise CniError(plugin="(result)", command="ADD", msg=f"the ADD result gives {ifname} no IP address")
    return next((ip for ip in found if ip.version == 4), found[0])


def plugin_error(plugin: str, command: str, stdout: bytes, stderr: bytes) -> CniError:
    """The error a failed plugin reported: its JSON ``code``/``msg``/``details``, else its stderr."""
    code: int | None = None
    msg = ""
    details = ""
    try:
        document = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        document = None
    if isinstance(document, dict):
        raw_code = document.get("code")
        code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
        msg = str(document.get("msg") or "")
        details = str(document.get("details") or "")
    if not msg:
        text = (stderr or stdout).decode(errors="replace").strip()
        msg = text.splitlines()[-1] if text else "failed without a message"
    kind = CniTemporaryError if code == CNI_TRY_AGAIN_LATER else CniError
    return kind(plugin=plugin, command=command, msg=msg, code=code, details=details)


# --- execution -----------------------------------------------------------------------------------


class CniClient:
    """Executes a network configuration list's plugins for ADD, CHECK and DEL."""

    def __init__(
        self,
        *,
        plugin_dirs: Sequence[Path] = (PLUGIN_DIR,),
        node_netns: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.plugin_dirs = tuple(plugin_dirs)
        self.node_netns = node_netns or None  # '' (the settings' default) means the kubelet's own
        self.timeout = timeout

    async def add(
        self, network: NetworkConfigList, attachment: Attachment, *, runtime: Mapping[str, Any] | None = None
    ) -> CniResult:
        """Run the list in order, each plugin getting the previous one's result; return the last result."""
        result: CniResult | None = None
        for index in range(len(network["plugins"])):
            config = plugin_config(network, index, runtime=runtime or {}, prev_result=result)
            output = await self._exec(config, "ADD", attachment)
            try:
                parsed = json.loads(output)
            except ValueError as exc:
                raise CniError(
                    plugin=str(config["type"]), command="ADD", msg=f"result is not JSON: {output[:200]!r}"
                ) from exc
            if not isinstance(parsed, dict):
                raise CniError(plugin=str(config["type"]), command="ADD", msg="result is not a JSON object")
            result = cast(CniResult, parsed)  # the plugin's own output: trusted to be a result
        if result is None:
            raise CniError(plugin="(none)", command="ADD", msg=f"network {network['name']} has no plugins")
        return result

    async def check(
        self,
        network: NetworkConfigList,
        attachment: Attachment,
        *,
        prev_result: CniResult,
        runtime: Mapping[str, Any] | None = None,
    ) -> None:
        """Ask every plugin, in order, whether the attachment is still as ADD left it."""
        for index in range(len(network["plugins"])):
            config = plugin_config(network, index, runtime=runtime or {}, prev_result=prev_result)
            await self._exec(config, "CHECK", attachment)

    async def delete(
        self,
        network: NetworkConfigList,
        attachment: Attachment,
        *,
        prev_result: CniResult | None = None,
        runtime: Mapping[str, Any] | None = None,
    ) -> None:
        """Run the list in reverse order; plugins treat resources already gone as success."""
        for index in reversed(range(len(network["plugins"]))):
            config = plugin_config(network, index, runtime=runtime or {}, prev_result=prev_result)
            await self._exec(config, "DEL", attachment)

    async def versions(self, plugin: str) -> tuple[str, ...]:
        """The spec versions ``plugin`` supports (``CNI_COMMAND=VERSION``)."""
        config = {"cniVersion": CNI_VERSION, "name": "version", "type": plugin}
        output = await self._exec(config, "VERSION", Attachment(container_id="", netns="", ifname=""))
        try:
            return tuple(str(v) for v in json.loads(output)["supportedVersions"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CniError(plugin=plugin, command="VERSION", msg=f"unexpected answer {output[:200]!r}") from exc

    def _find(self, plugin: str, command: str) -> Path:
        if not plugin or "/" in plugin:
            raise CniError(plugin=plugin or "(empty)", command=command, msg="invalid plugin type")
        for directory in self.plugin_dirs:
            candidate = directory / plugin
            if os.access(candidate, os.X_OK):
                return candidate
        searched = ":".join(str(d) for d in self.plugin_dirs)
        raise CniError(plugin=plugin, command=command, msg=f"plugin not found in {searched}")

    async def _exec(self, config: Mapping[str, Any], command: str, attachment: Attachment) -> bytes:
        plugin = str(config.get("type", ""))
        executable = self._find(plugin, command)
        argv = [str(executable)]
        if self.node_netns is not None:
            argv = ["ip", "netns", "exec", self.node_netns, *argv]
        env = dict(os.environ)
        env.setdefault("PATH", _DEFAULT_PATH)
        env.update(
            CNI_COMMAND=command,
            CNI_CONTAINERID=attachment.container_id,
            CNI_NETNS=attachment.netns,
            CNI_IFNAME=attachment.ifname,
            CNI_ARGS=attachment.args,
            CNI_PATH=":".join(str(d) for d in self.plugin_dirs),
        )
        stdin = json.dumps(config).encode()
        log.debug("CNI %s %s container=%s netns=%s", command, plugin, attachment.container_id, attachment.netns)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
        except OSError as exc:
            raise CniError(plugin=plugin, command=command, msg=f"cannot execute {argv[0]}: {exc}") from exc
        try:
            async with asyncio.timeout(self.timeout):
                out, err = await process.communicate(stdin)
        except TimeoutError as exc:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise CniTemporaryError(plugin=plugin, command=command, msg=f"no answer within {self.timeout:g} s") from exc
        if process.returncode != 0:
            cause = subprocess.CalledProcessError(process.returncode or 1, argv, out, err)
            raise plugin_error(plugin, command, out, err) from cause
        return out
