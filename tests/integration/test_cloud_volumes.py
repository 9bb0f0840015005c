"""The lab's cloud serves volumes on real libvirt: qcow2 files of the lab's volume pool.

A worker domain of a lab of this test's own is defined (not started: a live hot-plug into a running
guest is proven by the VM lab's e2e); the cloud process (``python -m provisioner.drivers.libvirt.cloud``)
makes the lab's volume pool in this test's directory and serves the volumes API over TLS. What the API
says is checked against what libvirt has (``virsh vol-list``, ``vol-info``, the domain's definition),
and the pool goes the way the lab's ``down`` removes it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelab_testing.commands import stop
from kubelab_testing.lab import free_port
from kubelab_testing.waiting import eventually
from provisioner.cloud import volumes
from provisioner.drivers.libvirt.driver import LibvirtDriver
from provisioner.drivers.libvirt.hypervisor import Hypervisor
from provisioner.lab.identity import ENV_UID
from provisioner.lab.paths import LabPaths
from provisioner.lab.pki import Pki
from provisioner.lab.spec import LabSpec
from tests.support.libvirtdomains import define_worker, undefine_all

GIB = 1 << 30


@pytest.fixture
def cloud_lab(libvirt_uri: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A lab of this test's own: one worker domain, defined only, and its cloud serving volumes."""
    name = f"vol{uuid.uuid4().hex[:6]}"
    machine, _uid = define_worker(libvirt_uri, name, subnet="192.168.212", bridge="klbrtestv", files=tmp_path)
    pki = Pki(tmp_path / "pki")
    pki.ensure_ca()
    pki.ensure_serving(dns_names=["localhost"], ips=["127.0.0.1"], name="cloud", common_name="kubelab-cloud")
    token = tmp_path / "cloud-token"
    token.write_text(secrets.token_hex(16))
    port = free_port()
    pool_dir = tmp_path / "volumes"
    argv = [
        sys.executable, "-m", "provisioner.drivers.libvirt.cloud",
        "--lab", name, "--uri", libvirt_uri, "--network-cidr", "192.168.212.0/24",
        "--address", "127.0.0.1", "--port", str(port),
        "--cert", str(pki.serving_cert("cloud")), "--key", str(pki.serving_key("cloud")), "--token-file", str(token),
        "--state-dir", str(tmp_path / "state"), "--volume-dir", str(pool_dir),
    ]  # fmt: skip
    uid = uuid.uuid4().hex
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, ENV_UID: uid}
    )
    found = {
        "lab": name,
        "uid": uid,
        "uri": libvirt_uri,
        "machine": machine.name,
        "pool": volumes.pool_name(name),
        "pool_dir": pool_dir,
        "url": f"https://127.0.0.1:{port}",
        "token": token.read_text(),
        "ca": str(pki.ca_cert),
    }
    try:
        eventually(lambda: _ask(found, "GET", "/v1/volumes")[0] == 200, timeout=30, what="the cloud's volumes API")
        yield found
    finally:
        stop(process)
        print((process.stdout.read() if process.stdout else "")[-3000:])
        undefine_all(libvirt_uri, name)
        with Hypervisor.open(libvirt_uri, name) as hv:
            hv.remove_pool(volumes.pool_name(name))  # as the lab's down does, by the pool's exact name


def _ask(cloud_lab: dict[str, Any], method: str, path: str, body: Any = None) -> tuple[int, Any]:
    context = ssl.create_default_context(cafile=cloud_lab["ca"])
    request = urllib.request.Request(
        cloud_lab["url"] + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {cloud_lab['token']}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except (urllib.error.URLError, ConnectionError):
        return 0, None


def _virsh(cloud_lab: dict[str, Any], *args: str) -> str:
    done = subprocess.run(
        ["virsh", "-c", cloud_lab["uri"], *args], capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout


def _inactive_xml(cloud_lab: dict[str, Any]) -> str:
    return _virsh(cloud_lab, "dumpxml", "--inactive", cloud_lab["machine"])


def test_volumes_are_qcow2_files_of_the_labs_pool_attached_by_serial(cloud_lab: dict[str, Any]) -> None:
    name, machine, pool = "pvc-0b4a9c1e-7d0e-4c59-a3e2-5f0d7c1a2b3c", cloud_lab["machine"], cloud_lab["pool"]
    # the pool was made when the cloud started, in its directory
    assert pool in _virsh(cloud_lab, "pool-list", "--name").split()
    assert cloud_lab["pool_dir"].is_dir()

    code, made = _ask(cloud_lab, "PUT", f"/v1/volumes/{name}", {"sizeBytes": GIB})
    assert code == 200, made
    assert made["id"] == volumes.volume_id(lab_uid=cloud_lab["uid"], pool=pool, name=name)
    assert (made["name"], made["sizeBytes"], made["pool"], made["format"]) == (name, GIB, pool, "qcow2")
    assert made["path"] == str(cloud_lab["pool_dir"] / name) and made["zone"] and made["attachedTo"] == ""
    assert name in _virsh(cloud_lab, "vol-list", pool)
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", made["path"]], capture_output=True, text=True, check=True
    )
    assert json.loads(info.stdout)["format"] == "qcow2"
    assert _ask(cloud_lab, "PUT", f"/v1/volumes/{name}", {"sizeBytes": 2 * GIB}) == (200, made)  # as it is
    assert _ask(cloud_lab, "GET", "/v1/volumes") == (200, {"items": [made]})
    assert _ask(cloud_lab, "GET", f"/v1/volumes/{name}") == (200, made)
    assert _ask(cloud_lab, "GET", "/v1/volumes/pvc-nothing")[0] == 404

    # the pool's figures refuse what it cannot hold
    code, refused = _ask(cloud_lab, "PUT", "/v1/volumes/pvc-huge", {"sizeBytes": 8 << 40})
    assert (
        code == 507 and refused["error"].startswith(f"pool {pool} has ") and f"{8 << 40} requested" in refused["error"]
    )
    assert "pvc-huge" not in _virsh(cloud_lab, "vol-list", pool)

    # grown while detached: the file itself
    code, grown = _ask(cloud_lab, "POST", f"/v1/volumes/{name}/resize", {"sizeBytes": 2 * GIB})
    assert code == 200 and grown["sizeBytes"] == 2 * GIB
    assert str(2 * GIB) in _virsh(cloud_lab, "vol-info", "--bytes", name, "--pool", pool)
    assert _ask(cloud_lab, "POST", f"/v1/volumes/{name}/resize", {"sizeBytes": GIB})[0] == 400

    # attached to the (shut off) machine: in its definition, a virtio disk whose serial is the id
    code, held = _ask(cloud_lab, "PUT", f"/v1/volumes/{name}/attachment", {"instance": machine})
    assert code == 200, held
    assert (held["attachedTo"], held["device"]) == (machine, "vdb")
    disks = volumes.disks(_inactive_xml(cloud_lab))
    assert volumes.Disk("vdb", made["id"], made["path"]) in disks
    assert _ask(cloud_lab, "PUT", f"/v1/volumes/{name}/attachment", {"instance": machine}) == (200, held)
    assert _ask(cloud_lab, "PUT", f"/v1/volumes/{name}/attachment", {"instance": "nowhere"})[0] == 409
    assert _ask(cloud_lab, "GET", f"/v1/volumes/{name}") == (200, held)  # read back from the domain
    code, busy = _ask(cloud_lab, "DELETE", f"/v1/volumes/{name}")
    assert code == 409 and machine in busy["error"]
    # a second volume takes the next target
    code, other = _ask(cloud_lab, "PUT", "/v1/volumes/pvc-second", {"sizeBytes": GIB})
    assert code == 200
    code, other = _ask(cloud_lab, "PUT", "/v1/volumes/pvc-second/attachment", {"instance": machine})
    assert code == 200 and other["device"] == "vdc"
    assert _ask(cloud_lab, "PUT", "/v1/volumes/pvc-third/attachment", {"instance": machine})[0] == 404

    # detached (the machine is off: its definition only, nothing to wait for)
    code, loose = _ask(cloud_lab, "DELETE", f"/v1/volumes/{name}/attachment")
    assert code == 200 and (loose["attachedTo"], loose["device"]) == ("", "")
    assert made["id"] not in _inactive_xml(cloud_lab)
    assert _ask(cloud_lab, "DELETE", f"/v1/volumes/{name}/attachment") == (200, loose)  # not attached: no error
    code, forced = _ask(cloud_lab, "DELETE", "/v1/volumes/pvc-second/attachment?force=true")
    assert code == 200 and forced["attachedTo"] == ""
    assert not [d for d in volumes.disks(_inactive_xml(cloud_lab)) if d.target != "vda"]

    code, gone = _ask(cloud_lab, "DELETE", f"/v1/volumes/{name}")
    assert code == 200 and gone["id"] == made["id"]
    assert name not in _virsh(cloud_lab, "vol-list", pool) and not Path(made["path"]).exists()
    assert _ask(cloud_lab, "DELETE", f"/v1/volumes/{name}")[0] == 404


def test_the_pool_and_its_volumes_go_as_the_labs_down_removes_them(cloud_lab: dict[str, Any], tmp_path: Path) -> None:
    assert _ask(cloud_lab, "PUT", "/v1/volumes/pvc-kept", {"sizeBytes": GIB})[0] == 200
    spec = dataclasses.replace(LabSpec(), name=cloud_lab["lab"])
    driver = LibvirtDriver(spec, LabPaths(tmp_path / "lab"), vm_root=tmp_path / "vms")
    assert driver.volume_pool.name == cloud_lab["pool"]  # the pool the lab's down removes is the cloud's
    with Hypervisor.open(cloud_lab["uri"], cloud_lab["lab"]) as hv:
        assert hv.remove_pool(driver.volume_pool.name)  # as LibvirtDriver.down does
    assert cloud_lab["pool"] not in _virsh(cloud_lab, "pool-list", "--all", "--name").split()
    assert not cloud_lab["pool_dir"].exists()
