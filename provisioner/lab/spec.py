"""The lab spec: what ``kubelab up`` builds, from defaults, a lab.yaml and flags (in that order).

lab.yaml keys are the flag names without dashes in front (``api-port: 7443``), as the flags are.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from provisioner.errors import SpecError

DRIVERS = ("libvirt", "local")
ACCELERATORS = ("auto", "kvm", "tcg")
# "cloud": the cloud-controller-manager's route controller puts them in the cloud's router (the lab
# network's gateway); "host-gw": every node's proxy routes the other nodes' CIDRs via their addresses
POD_ROUTES = ("cloud", "host-gw")
MAX_WORKERS = 16
MIN_DISK_GIB = 4
FIRST_HOST = 10  # the master's host number in network-cidr; workers follow it
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII digits only ("²".isdigit() is true); at most 18, as every setting fits
MAX_TEXT = 200  # characters of a text setting (CIDRs, ranges, names are far shorter)


def _shown(value: Any, limit: int = 60) -> str:
    """A value as an error message quotes it: one line, at most ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class LabSpec:
    name: str = "kubelab"
    driver: str = "libvirt"
    api_port: int = 6443
    etcd_port: int = 2379
    etcd_peer_port: int = 2380
    registry_port: int = 5000
    service_cidr: str = "10.96.0.0/12"
    node_port_range: str = "30000-32767"
    cluster_cidr: str = "10.244.0.0/16"
    nodes: int = 1
    simulated_nodes: int = 0
    node_grace_period: int = 40
    eviction_seconds: int = 300
    apiserver_workers: int = 0
    # the libvirt driver's machines
    workers: int = 2
    cpus: int = 1
    memory: int = 1024
    master_cpus: int = 2
    master_memory: int = 2048
    disk: int = 8
    network_cidr: str = "192.168.123.0/24"
    lb_range: str = ""  # load balancers' addresses on the lab network: FIRST-LAST ('': the default, lb_range())
    pod_routes: str = "cloud"  # who routes the nodes' pod CIDRs: the cloud's router, or every node (host-gw)
    accel: str = "auto"

    @staticmethod
    def fields() -> list[str]:
        return [f.name for f in dataclasses.fields(LabSpec)]

    @staticmethod
    def keys() -> list[str]:
        return [name.replace("_", "-") for name in LabSpec.fields()]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LabSpec:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _coerce(key: str, value: Any, kind: type) -> Any:
    if kind is int:
        text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
        if not _DIGITS.fullmatch(text):
            raise SpecError(f"{key}: expected a number, got {_shown(value)}")
        return int(text)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise SpecError(f"{key}: expected text, got {_shown(value)}")
    if isinstance(value, int) and abs(value) >= 10**18:
        raise SpecError(f"{key}: expected text, got a number of {len(str(abs(value)))} digits")
    if len(str(value)) > MAX_TEXT:
        raise SpecError(f"{key}: expected at most {MAX_TEXT} characters, got {len(str(value))}")
    return str(value)


def build(file: Path | None, overrides: Mapping[str, Any], *, base: LabSpec | None = None) -> LabSpec:
    """``base`` (an existing lab's saved spec) or the defaults, then ``file`` (lab.yaml), then
    ``overrides`` (flags; None means not given)."""
    return build_given(file, overrides, base=base)[0]


def build_given(
    file: Path | None, overrides: Mapping[str, Any], *, base: LabSpec | None = None
) -> tuple[LabSpec, frozenset[str]]:
    """As :func:`build`, with the fields the user gave explicitly (a key of ``file`` or a flag):
    those a lab's first ``up`` must not pick for itself (``allocation``)."""
    values: dict[str, Any] = dataclasses.asdict(base) if base is not None else {}
    given: set[str] = set()
    types = {f.name: f.type for f in dataclasses.fields(LabSpec)}
    kinds = {name: int if t in (int, "int") else str for name, t in types.items()}
    if file is not None:
        for key, value in _document(file).items():
            attr = str(key).replace("-", "_")
            if attr not in kinds:
                raise SpecError(f"{file}: unknown setting {_shown(key)}; known: {', '.join(LabSpec.keys())}")
            values[attr] = _coerce(str(key), value, kinds[attr])
            given.add(attr)
    for attr, value in overrides.items():
        if value is not None:
            values[attr] = _coerce(attr.replace("_", "-"), value, kinds[attr])
            given.add(attr)
    spec = LabSpec(**values)
    validate(spec)
    return spec, frozenset(given)


def _document(file: Path) -> dict[Any, Any]:
    """lab.yaml's settings, or a one-line SpecError saying why there are none."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read {file}: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{file} is not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})") from exc
    try:
        document = yaml.safe_load(text) or {}
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # ValueError: a number of 4300+ digits
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SpecError(f"{file} is not valid YAML: {first[:200]}") from exc
    if not isinstance(document, dict):
        raise SpecError(f"{file}: expected a mapping of settings, e.g. 'api-port: 7443'")
    return document


def validate(spec: LabSpec) -> None:
    if not _NAME.match(spec.name):
        raise SpecError(
            f"name {_shown(spec.name)}: use 1-40 lowercase letters, digits and '-', starting and ending with"
            " a letter or digit"
        )
    if spec.driver not in DRIVERS:
        raise SpecError(f"driver {_shown(spec.driver)}: choose one of {', '.join(DRIVERS)}")
    ports = {
        "api-port": spec.api_port,
        "etcd-port": spec.etcd_port,
        "etcd-peer-port": spec.etcd_peer_port,
        "registry-port": spec.registry_port,
    }
    for key, port in ports.items():
        if not 1 <= port <= 65535:
            raise SpecError(f"{key} {port}: must be between 1 and 65535")
    if len(set(ports.values())) != len(ports):
        raise SpecError(f"{', '.join(ports)} must differ (got {sorted(ports.values())})")
    try:
        network = ipaddress.ip_network(spec.service_cidr)
    except ValueError as exc:
        raise SpecError(f"service-cidr {_shown(spec.service_cidr)}: {exc}") from exc
    if network.version != 4 or network.num_addresses < 16:
        raise SpecError(f"service-cidr {spec.service_cidr}: use an IPv4 range of at least /28, e.g. 10.96.0.0/12")
    if spec.driver == "local" and not 0 <= spec.nodes <= 1:
        raise SpecError(f"nodes {spec.nodes}: the local driver runs 0 or 1 real node (use --simulated-nodes for more)")
    if not 0 <= spec.simulated_nodes <= 1000:
        raise SpecError(f"simulated-nodes {spec.simulated_nodes}: choose 0 to 1000")
    if not 0 <= spec.apiserver_workers <= 16:
        raise SpecError(f"apiserver-workers {spec.apiserver_workers}: choose 0 (automatic) to 16")
    if spec.node_grace_period < 2:
        raise SpecError(f"node-grace-period {spec.node_grace_period}: at least 2 seconds (nodes renew every 10)")
    try:
        pods = ipaddress.ip_network(spec.cluster_cidr)
    except ValueError as exc:
        raise SpecError(f"cluster-cidr {_shown(spec.cluster_cidr)}: {exc}") from exc
    if pods.version != 4 or pods.prefixlen > 20:
        raise SpecError(f"cluster-cidr {spec.cluster_cidr}: use an IPv4 range of at least /20 (nodes get /24s)")
    if pods.overlaps(network):
        raise SpecError(f"cluster-cidr {spec.cluster_cidr} overlaps service-cidr {spec.service_cidr}")
    low, sep, high = spec.node_port_range.partition("-")
    if not sep or not _DIGITS.fullmatch(low) or not _DIGITS.fullmatch(high) or not 1 <= int(low) < int(high) <= 65535:
        raise SpecError(f"node-port-range {_shown(spec.node_port_range)}: expected LOW-HIGH, e.g. 30000-32767")
    if spec.driver == "libvirt":
        _validate_machines(spec)


def _validate_machines(spec: LabSpec) -> None:
    if not 0 <= spec.workers <= MAX_WORKERS:
        raise SpecError(f"workers {spec.workers}: choose 0 to {MAX_WORKERS}")
    for key, cpus in (("cpus", spec.cpus), ("master-cpus", spec.master_cpus)):
        if not 1 <= cpus <= 16:
            raise SpecError(f"{key} {cpus}: choose 1 to 16 virtual CPUs")
    for key, memory in (("memory", spec.memory), ("master-memory", spec.master_memory)):
        if not 512 <= memory <= 65536:
            raise SpecError(f"{key} {memory}: give MiB between 512 and 65536, e.g. 1024")
    if not MIN_DISK_GIB <= spec.disk <= 1024:
        raise SpecError(f"disk {spec.disk}: give GiB between {MIN_DISK_GIB} and 1024")
    if spec.accel not in ACCELERATORS:
        raise SpecError(f"accel {_shown(spec.accel)}: choose one of {', '.join(ACCELERATORS)}")
    if spec.pod_routes not in POD_ROUTES:
        raise SpecError(f"pod-routes {_shown(spec.pod_routes)}: choose one of {', '.join(POD_ROUTES)}")
    try:
        machines = ipaddress.ip_network(spec.network_cidr)
    except ValueError as exc:
        raise SpecError(f"network-cidr {_shown(spec.network_cidr)}: {exc}") from exc
    if machines.version != 4 or not 16 <= machines.prefixlen <= 28:
        raise SpecError(
            f"network-cidr {spec.network_cidr}: use an IPv4 range between /16 and /28, e.g. 192.168.123.0/24"
        )
    if machines.num_addresses < FIRST_HOST + spec.workers + 2:
        raise SpecError(f"network-cidr {spec.network_cidr} is too small for a master and {spec.workers} workers")
    for other, key in ((spec.cluster_cidr, "cluster-cidr"), (spec.service_cidr, "service-cidr")):
        if machines.overlaps(ipaddress.ip_network(other)):
            raise SpecError(f"network-cidr {spec.network_cidr} overlaps {key} {other}")
    assert isinstance(machines, ipaddress.IPv4Network)
    _validate_lb_range(spec, machines)


def _lb_bounds(spec: LabSpec) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] | None:
    network = ipaddress.IPv4Network(spec.network_cidr)
    if not spec.lb_range:
        hosts = list(network.hosts())
        first = max(len(hosts) // 2, FIRST_HOST + MAX_WORKERS + 4)
        return (hosts[first], hosts[-1]) if first < len(hosts) else None
    low, _, high = spec.lb_range.partition("-")
    return ipaddress.IPv4Address(low.strip()), ipaddress.IPv4Address(high.strip())


def lb_range(spec: LabSpec) -> str:
    """The addresses load balancers get on the lab network (``FIRST-LAST``): ``--lb-range``, else the
    upper half of the network above the machines' addresses; '' when the network has no room for any."""
    bounds = _lb_bounds(spec)
    return f"{bounds[0]}-{bounds[1]}" if bounds else ""


def _validate_lb_range(spec: LabSpec, network: ipaddress.IPv4Network) -> None:
    if not spec.lb_range:
        return
    example = f"{list(network.hosts())[-50]}-{list(network.hosts())[-1]}" if network.num_addresses > 64 else ""
    hint = f", e.g. {example}" if example else ""
    try:
        bounds = _lb_bounds(spec)
    except ValueError:
        raise SpecError(f"lb-range {_shown(spec.lb_range)}: expected FIRST-LAST addresses{hint}") from None
    assert bounds is not None
    first, last = bounds
    hosts = list(network.hosts())
    if first not in network or last not in network or first > last:
        raise SpecError(f"lb-range {spec.lb_range}: give FIRST-LAST inside network-cidr {network}{hint}")
    machines = (hosts[0], hosts[min(FIRST_HOST - 1 + MAX_WORKERS, len(hosts) - 1)])  # gateway .. the last worker
    if first <= machines[1] and last >= machines[0]:
        raise SpecError(f"lb-range {spec.lb_range} overlaps the machines' addresses {machines[0]}-{machines[1]}{hint}")
    if last == network.broadcast_address:
        raise SpecError(f"lb-range {spec.lb_range} includes the broadcast address {last}{hint}")


def service_ip(spec: LabSpec) -> str:
    """The ClusterIP of the ``kubernetes`` Service (the first address of the range)."""
    return str(ipaddress.ip_network(spec.service_cidr).network_address + 1)


def cluster_dns_ip(spec: LabSpec) -> str:
    """The ClusterIP of the ``kube-dns`` Service, the cluster's DNS (the tenth address of the range,
    as kubeadm chooses it); every kubelet gives it to pods with dnsPolicy ClusterFirst."""
    return str(ipaddress.ip_network(spec.service_cidr).network_address + 10)
