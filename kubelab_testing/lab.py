"""A lab as a test or a benchmark sees it: a name and a home, everything else read from the lab's own files.

``kubelab up`` writes what a lab is into ``HOME/NAME/`` (``lab.json``: the spec, with the host ports its
API server and registry answer on; ``kubeconfig``; ``ssh_config``); :class:`Lab` reads them when asked,
so one value serves a lab that a test created a second ago and one a user made last week, with either
driver. ``lab.cli(...)`` is the one way tests run the ``kubelab`` command for a lab, :func:`created_lab`
the one way a session makes a lab of its own and removes it afterwards, and :func:`up_flags` puts such
a lab on free host ports so that it runs beside every other.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubelab_testing.commands import Result, run
from provisioner.drivers.libvirt import daemon as libvirthost
from provisioner.drivers.libvirt import plan as vmplan
from provisioner.lab.spec import LabSpec
from provisioner.system import ports as hostports

TIMEOUT = 1800.0  # one kubelab command: a VM lab's `up` under software emulation takes many minutes


@dataclass(frozen=True)
class Node:
    name: str
    role: str  # master or worker
    ip: str


@dataclass(frozen=True)
class Lab:
    name: str
    home: Path  # KUBELAB_HOME: the lab's files are in HOME/NAME
    timeout: float = TIMEOUT  # the longest one kubelab command for this lab may take before it counts as hung

    @property
    def root(self) -> Path:
        return self.home / self.name

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def ssh_config(self) -> Path:
        return self.root / "ssh_config"

    @property
    def spec(self) -> dict[str, Any]:
        """lab.json as ``kubelab up`` saved it (the settings the lab was made with)."""
        data: dict[str, Any] = json.loads((self.root / "lab.json").read_text())
        return data

    @property
    def api_port(self) -> int:
        return int(self.spec["api_port"])

    @property
    def registry_port(self) -> int:
        return int(self.spec["registry_port"])

    @property
    def server(self) -> str:
        """The API server's address on this host (a VM lab's is forwarded to the master)."""
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def registry(self) -> str:
        """The lab registry's ``host:port`` on this host, as image references start."""
        return f"127.0.0.1:{self.registry_port}"

    @property
    def nodes(self) -> list[Node]:
        """A VM lab's machines, the master first (a local lab has none: its node is a namespace here)."""
        spec = LabSpec.from_json((self.root / "lab.json").read_text())
        if spec.driver != "libvirt":
            return []
        return [Node(m.name, m.role, m.ip) for m in vmplan.machines(spec)]

    @property
    def workers(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "worker"]

    @property
    def master(self) -> Node:
        return self.nodes[0]

    def cli(
        self, *args: str, timeout: float | None = None, env: Mapping[str, str] | None = None, show: bool = False
    ) -> Result:
        """``kubelab ARGS`` with this lab's home (give ``--name`` where the command takes it). ``env``: more
        variables; ``show``: the output goes to this process's own as it comes instead of into the result."""
        argv = [sys.executable, "-m", "provisioner.cli", *args]
        variables = {**(env or {}), "KUBELAB_HOME": str(self.home)}
        return run(argv, timeout=self.timeout if timeout is None else timeout, env=variables, show=show)

    def ssh(self, node: str, command: str, *, timeout: float = 120) -> Result:
        """``command`` as root on ``node`` (a VM lab's machine), through the lab's ssh config."""
        return run(["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", node, command], timeout=timeout)

    @property
    def network_namespace(self) -> str:
        """The network namespace the lab's machines are reachable in ('': this host's own)."""
        daemon = libvirthost.current()
        return daemon.netns if daemon is not None else ""

    def on_lab_network(self, argv: list[str]) -> list[str]:
        """``argv`` run where the lab's machines are reachable (inside kubelab's namespace if it has one)."""
        daemon = libvirthost.current()
        return daemon.wrap(argv) if daemon is not None else argv


_HANDED_OUT: set[int] = set()  # never the same port twice in one process (a lab's four, two labs')


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1, outside the kernel's ephemeral range (where any
    outgoing connection could take it before the lab binds it), not handed out before by this process."""
    port = hostports.free(avoid=_HANDED_OUT)
    _HANDED_OUT.add(port)
    return port


def up_flags(driver: str, *flags: str) -> tuple[str, ...]:
    """``kubelab up`` flags of a lab for a test or a benchmark: ``driver``, every port the lab takes on this
    host on a free one (a local lab's four, a VM lab's forwarded API server and registry), then ``flags``.
    A local lab runs the control plane alone unless ``flags`` ask for ``--nodes``."""
    ports = ["--api-port", str(free_port()), "--registry-port", str(free_port())]
    if driver == "local":
        ports += ["--etcd-port", str(free_port()), "--etcd-peer-port", str(free_port())]
        if "--nodes" not in flags:
            ports += ["--nodes", "0"]
    return ("--driver", driver, *ports, *flags)


class LabFailed(RuntimeError):
    """``kubelab up`` or ``kubelab down`` of a lab made for a session did not succeed."""


@contextmanager
def created_lab(
    name: str,
    flags: Sequence[str] = (),
    *,
    home: Path | None = None,
    timeout: float = TIMEOUT,
    env: Mapping[str, str] | None = None,
    show: bool = False,
) -> Iterator[Lab]:
    """A lab made for a session: ``kubelab up --name NAME FLAGS`` on entry, ``kubelab down`` on exit
    whatever happens. Without ``home``, in a KUBELAB_HOME of its own, removed afterwards. :class:`LabFailed`
    when up fails, or when down fails after a body that did not. ``timeout``, ``env``, ``show``: as
    :meth:`Lab.cli`'s, for every command of the lab."""
    own_home = home is None
    lab = Lab(name, home or Path(tempfile.mkdtemp(prefix="kubelab-lab-")), timeout=timeout)
    try:
        up = lab.cli("up", "--name", name, *flags, env=env, show=show)
        if not up.ok:
            said = f":\n{up.out}{up.err}" if not show else "; its output is above"
            raise LabFailed(f"kubelab up --name {name} failed (exit code {up.code}){said}")
        yield lab
    finally:
        down = lab.cli("down", "--name", name, env=env, show=show)
        if own_home:
            shutil.rmtree(lab.home, ignore_errors=True)
    if not down.ok:
        raise LabFailed(f"kubelab down --name {name} failed (exit code {down.code}): {down.err}{down.out}")
