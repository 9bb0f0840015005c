"""The lab's cloud API as a process of the lab: its credentials, its start, its check, its end.

The cloud (``provisioner.cloud``, backed by this driver's libvirt in ``cloud.py``) listens on the lab
network's gateway (the bridge's own address) at ``PORT``, where the master's cloud-controller-manager
reaches it; nothing outside the lab network can (in self-contained mode it runs inside kubelab's
``kubelab-vms`` namespace). It presents a serving certificate of the lab's CA for the gateway address
(``pki/cloud.crt``) and takes one bearer token of its own (``pki/cloud.token``), which only the
cloud-controller-manager is given. Like every process of a lab it is recorded by pid and start time
in the lab's run directory and carries the lab's identity in its environment, so ``stop``/``down``
end exactly it and an orphan is found.

Planning is pure (:func:`plan`, :func:`argv`); the executor follows (:func:`ensure`, :func:`stop`).
"""

from __future__ import annotations

import hashlib
import secrets
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from provisioner.drivers.libvirt import plan as vmplan
from provisioner.errors import HostError
from provisioner.lab.paths import LabPaths
from provisioner.lab.pki import Pki
from provisioner.lab.spec import LabSpec, lb_range
from provisioner.system import netns, processes
from provisioner.system.waiting import timed_out, wait_for

NAME = "cloud"  # the record in the lab's run directory, and its log
PORT = 7443  # on the gateway
CERT = "cloud"  # pki/cloud.crt, pki/cloud.key
START_TIMEOUT = 30.0


def code_digest() -> str:
    """A digest of the cloud's own code: a running cloud whose code changed is started again by ``up``."""
    here = Path(__file__).resolve()
    files = [
        *sorted((here.parents[2] / "cloud").glob("*.py")),
        here.with_name("cloud.py"),
        here.with_name("volumes.py"),
    ]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


class CloudServiceError(HostError):
    """The lab's cloud API did not start or does not answer."""


@dataclass(frozen=True)
class CloudService:
    lab: str
    uri: str  # libvirt's
    network_cidr: str
    address: str  # the gateway
    port: int
    cert: Path
    key: Path
    token_file: Path
    ca_file: Path
    lb_range: str  # FIRST-LAST ('' none)
    bridge: str  # the lab network's bridge
    state_dir: Path  # the load balancers and haproxy's files, the routes

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}"


def plan(spec: LabSpec, paths: LabPaths, *, uri: str) -> CloudService:
    pki = Pki(paths.pki)
    return CloudService(
        lab=spec.name,
        uri=uri,
        network_cidr=spec.network_cidr,
        address=vmplan.network(spec).gateway,
        port=PORT,
        cert=pki.serving_cert(CERT),
        key=pki.serving_key(CERT),
        token_file=paths.pki / "cloud.token",
        ca_file=pki.ca_cert,
        lb_range=lb_range(spec),
        bridge=vmplan.network(spec).bridge,
        state_dir=paths.root / "cloud",
    )


def argv(service: CloudService, *, netns_name: str) -> list[str]:
    command = [
        sys.executable, "-m", "provisioner.drivers.libvirt.cloud",
        "--lab", service.lab, "--uri", service.uri, "--network-cidr", service.network_cidr,
        "--address", service.address, "--port", str(service.port),
        "--cert", str(service.cert), "--key", str(service.key), "--token-file", str(service.token_file),
        "--lb-range", service.lb_range, "--bridge", service.bridge, "--state-dir", str(service.state_dir),
        "--code", code_digest(),
    ]  # fmt: skip
    if netns_name:  # kubelab's own namespace: its router may turn ICMP redirects off for all of it
        command.append("--router-namespace")
    return ["ip", "netns", "exec", netns_name, *command] if netns_name else command


# --- the executor -----------------------------------------------------------------------------------


def ensure_credentials(service: CloudService, paths: LabPaths) -> None:
    """The cloud's serving certificate for the gateway and its token, made once and kept."""
    Pki(paths.pki).ensure_serving(dns_names=[], ips=[service.address], name=CERT, common_name="kubelab-cloud")
    if not service.token_file.exists():
        service.token_file.write_text(secrets.token_urlsafe(32) + "\n")
        service.token_file.chmod(0o600)


def answers(service: CloudService, *, netns_name: str, timeout: float = 2.0) -> str:
    """'' when the cloud lists instances from where the lab network is, else what went wrong."""
    outcome: list[str] = []

    def ask() -> None:  # a thread of its own: entering a namespace moves the calling thread only
        try:
            netns.enter(netns_name)
            context = ssl.create_default_context(cafile=str(service.ca_file))
            token = service.token_file.read_text().strip()
            request = urllib.request.Request(
                f"{service.url}/v1/instances", headers={"Authorization": f"Bearer {token}"}
            )
            with urllib.request.urlopen(request, context=context, timeout=timeout) as answer:
                outcome.append("" if answer.status == 200 else f"answered {answer.status}")
        except urllib.error.HTTPError as exc:
            outcome.append(f"answered {exc.code}")
        except (OSError, ssl.SSLError) as exc:
            outcome.append(str(getattr(exc, "reason", None) or exc))

    thread = threading.Thread(target=ask, name="cloud-check", daemon=True)
    thread.start()
    thread.join(timeout + 3.0)
    return outcome[0] if outcome else "no answer"


def current(paths: LabPaths) -> processes.ProcessRecord | None:
    """The lab's cloud process while it runs, else None."""
    return processes.running_record(paths.run, NAME)


def ensure(
    service: CloudService,
    paths: LabPaths,
    *,
    netns_name: str,
    tags: Mapping[str, str],
    say: Callable[[str], None],
) -> processes.ProcessRecord:
    """The lab's cloud API runs where the lab network is and answers on the gateway (started, or
    restarted when how it runs or its code changed)."""
    ensure_credentials(service, paths)
    wanted = argv(service, netns_name=netns_name)
    record = current(paths)
    if record is not None and record.argv == tuple(wanted) and not answers(service, netns_name=netns_name):
        return record
    if record is not None:
        processes.stop(record)
    began = time.monotonic()
    log = paths.logs / f"{NAME}.log"
    record = processes.spawn(NAME, wanted, log=log, tags=tags, record_in=paths.run)
    seen = ["not asked yet"]

    def ready() -> bool:
        seen[0] = answers(service, netns_name=netns_name, timeout=1.0)
        return not seen[0]

    def exited() -> str | None:
        if processes.alive(record):
            return None
        seen[0] = f"it exited ({processes.log_tail(log, 1) or 'no output'})"
        return seen[0]

    what = f"the cloud API to answer on {service.url}"
    if not wait_for(ready, timeout=START_TIMEOUT, interval=0.2, abort=exited, what=what, last=lambda: seen[0]):
        stop(paths)
        raise CloudServiceError(
            f"the lab's cloud API did not start ({timed_out(what, START_TIMEOUT, seen[0])}); see {log}"
        )
    say(f"  cloud: the cloud API (pid {record.pid}) answers on {service.url} ({time.monotonic() - began:.1f}s)")
    return record


def stop(paths: LabPaths) -> bool:
    """End the lab's cloud API (by its record) and forget it; whether it ran."""
    return processes.stop_recorded(paths.run, NAME)
