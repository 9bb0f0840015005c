"""The cloud's volumes: ids, request checks, the libvirt documents, the API and its client.

The API runs here over ``FakeVolumes``, declared below: an in-memory pool and instances that keep the
rules of the libvirt backend with the same pure functions (room, growth, targets, attachments); the
real one (``provisioner.drivers.libvirt.volumes``) is in tests/integration/test_cloud_volumes.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from agents.controllers.cloud.provider import CloudConfig, CloudError, CloudProvider
from provisioner.cloud import instances as cloud
from provisioner.cloud import volumes
from provisioner.cloud.server import application

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GIB = 1 << 30
DOMAIN = """<domain type='qemu'><name>{name}</name><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/vms/{name}.qcow2'/>
<target dev='vda' bus='virtio'/></disk>{extra}
<interface type='network'><source network='kubelab-lab'/></interface></devices></domain>"""


def domain(name: str, *extra: str) -> str:
    return DOMAIN.format(name=name, extra="".join(extra))


# --- names, ids and bodies ----------------------------------------------------------------------


def test_a_volume_id_is_a_virtio_serial_derived_from_the_labs_identity_pool_and_name() -> None:
    made = volumes.volume_id(lab_uid="uid-1", pool="kubelab-lab.volumes", name="pvc-a")
    assert made.startswith("vol-") and len(made) == 20 and volumes.is_id(made)
    assert made == volumes.volume_id(lab_uid="uid-1", pool="kubelab-lab.volumes", name="pvc-a")
    others = {
        volumes.volume_id(lab_uid="uid-2", pool="kubelab-lab.volumes", name="pvc-a"),
        volumes.volume_id(lab_uid="uid-1", pool="kubelab-other.volumes", name="pvc-a"),
        volumes.volume_id(lab_uid="uid-1", pool="kubelab-lab.volumes", name="pvc-b"),
    }
    assert made not in others and len(others) == 3
    assert not volumes.is_id("vol-XYZ") and not volumes.is_id("vol-" + "a" * 17)


def test_the_volume_pool_of_a_lab_can_be_no_other_labs_pool() -> None:
    assert volumes.pool_name("lab") == "kubelab-lab.volumes"
    # lab names have no '.': neither the machines' pool of a lab "lab-volumes" nor another lab's volumes
    assert volumes.pool_name("lab") != "kubelab-lab-volumes"


@pytest.mark.parametrize("name", ["pvc-0b4a", "a", "pvc-1.x"])
def test_volume_names_are_dns_subdomains(name: str) -> None:
    assert volumes.check_name(name) == name


@pytest.mark.parametrize("name", ["", "Pvc", "-a", "a/b", "../x", "a" * 254, "a_b"])
def test_other_volume_names_are_refused(name: str) -> None:
    with pytest.raises(volumes.VolumeError, match="DNS-1123") as caught:
        volumes.check_name(name)
    assert caught.value.status == 400


def test_sizes_are_whole_positive_bytes_rounded_up_to_mib() -> None:
    assert volumes.size_of({"sizeBytes": GIB}) == GIB
    assert volumes.size_of({"sizeBytes": 1}) == 1 << 20
    assert volumes.size_of({"sizeBytes": (1 << 20) + 1}) == 2 << 20
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "sizeBytes is required"),
        ({"sizeBytes": "1Gi"}, "sizeBytes is required"),
        ({"sizeBytes": True}, "sizeBytes is required"),
        ({"sizeBytes": 1.5}, "sizeBytes is required"),
        ({"sizeBytes": 0}, "must be positive"),
        ({"sizeBytes": -5}, "must be positive"),
        ({"sizeBytes": volumes.MAX_SIZE + 1}, "largest volume"),
    ]
    for bad, says in cases:
        with pytest.raises(volumes.VolumeError, match=says):
            volumes.size_of(bad)


def test_an_attachment_names_its_instance() -> None:
    assert volumes.instance_of({"instance": "lab-worker1"}) == "lab-worker1"
    for bad in ({}, {"instance": ""}, {"instance": 3}):
        with pytest.raises(volumes.VolumeError, match="instance is required"):
            volumes.instance_of(bad)


def test_a_pool_without_room_refuses_with_its_figures() -> None:
    volumes.check_room("p", available=10, requested=10)
    with pytest.raises(volumes.InsufficientCapacityError) as caught:
        volumes.check_room("kubelab-lab.volumes", available=100, requested=200)
    assert caught.value.status == 507
    assert str(caught.value) == "pool kubelab-lab.volumes has 100 bytes available, 200 requested"


def test_a_volume_grows_and_never_shrinks() -> None:
    assert volumes.check_growth("v", current=GIB, wanted=2 * GIB) == GIB
    assert volumes.check_growth("v", current=GIB, wanted=GIB) == 0
    with pytest.raises(volumes.VolumeError, match="cannot shrink") as caught:
        volumes.check_growth("v", current=2 * GIB, wanted=GIB)
    assert caught.value.status == 400


# --- the instances' disks and the documents -----------------------------------------------------


def test_the_disk_of_a_volume_is_virtio_qcow2_with_the_id_as_serial() -> None:
    xml = volumes.disk_xml(path="/pool/pvc-a", target="vdb", serial="vol-0123456789abcdef")
    assert volumes.disks(domain("lab-worker1", xml))[1] == volumes.Disk("vdb", "vol-0123456789abcdef", "/pool/pvc-a")
    assert "type='file'" in xml and "type='qcow2'" in xml and "bus='virtio'" in xml
    odd = volumes.disk_xml(path="/pool/a<b'c", target="vdb", serial="s")
    assert volumes.disks(domain("w", odd))[1].source == "/pool/a<b'c"  # quoted, not broken


def test_a_new_volume_is_a_qcow2_of_the_size_asked() -> None:
    xml = volumes.volume_xml("pvc-a", size_bytes=GIB)
    assert "<name>pvc-a</name>" in xml and f"<capacity unit='bytes'>{GIB}</capacity>" in xml
    assert "<format type='qcow2'/>" in xml


def test_the_first_free_virtio_target_follows_the_machines_own_disk() -> None:
    vdb = volumes.disk_xml(path="/p/a", target="vdb", serial="a")
    vdd = volumes.disk_xml(path="/p/b", target="vdd", serial="b")
    assert volumes.free_target([domain("w")]) == "vdb"
    assert volumes.free_target([domain("w", vdb)]) == "vdc"
    # the live definition and the persistent one both count: a target free in only one is not free
    assert volumes.free_target([domain("w", vdb), domain("w", vdd)]) == "vdc"
    assert volumes.free_target([domain("w", vdb, volumes.disk_xml(path="/p/c", target="vdc", serial="c"))]) == "vdd"
    full = [volumes.disk_xml(path=f"/p/{c}", target=f"vd{c}", serial=c) for c in "bcdefghijklmnopqrstuvwxyz"]
    assert volumes.free_target([domain("w", *full)]) == "vdaa"


def test_which_instance_holds_a_volume_is_read_from_the_domains() -> None:
    disk = volumes.disk_xml(path="/p/a", target="vdc", serial="vol-0123456789abcdef")
    found = {
        "lab-worker1": [domain("lab-worker1")],
        "lab-worker2": [domain("lab-worker2"), domain("lab-worker2", disk)],
    }
    assert volumes.attachment("vol-0123456789abcdef", found) == ("lab-worker2", "vdc")
    assert volumes.attachment("vol-ffffffffffffffff", found) == ("", "")


def test_a_volume_answers_in_the_contracts_shape() -> None:
    made = volumes.Volume("pvc-a", "vol-0123456789abcdef", GIB, "kubelab-lab.volumes", "/p/pvc-a", "host")
    assert made.json() == {
        "name": "pvc-a",
        "id": "vol-0123456789abcdef",
        "sizeBytes": GIB,
        "pool": "kubelab-lab.volumes",
        "path": "/p/pvc-a",
        "format": "qcow2",
        "zone": "host",
        "attachedTo": "",
        "device": "",
    }


# --- the API over a fake backend ----------------------------------------------------------------


class FakeVolumes:
    """An in-memory pool of ``capacity`` bytes and instances (name -> running, disks by target -> id),
    with the backend's rules; ``pending`` instances keep a disk after a live detach (a guest that does
    not let go), as QEMU waits for a guest's acknowledgement."""

    def __init__(self, *, capacity: int, instances: dict[str, bool]) -> None:
        self.capacity = capacity
        self.sizes: dict[str, int] = {}
        self.running = dict(instances)
        self.disks: dict[str, dict[str, str]] = {name: {"vda": "root"} for name in instances}
        self.pending: set[str] = set()
        self.forced: list[str] = []

    def _volume(self, name: str) -> volumes.Volume:
        volume_id = volumes.volume_id(lab_uid="uid", pool="kubelab-lab.volumes", name=name)
        held = next(((i, t) for i, ds in sorted(self.disks.items()) for t, s in ds.items() if s == volume_id), None)
        return volumes.Volume(
            name,
            volume_id,
            self.sizes[name],
            "kubelab-lab.volumes",
            f"/pool/{name}",
            "host",
            held[0] if held else "",
            held[1] if held else "",
        )

    def _existing(self, name: str) -> volumes.Volume:
        volumes.check_name(name)
        if name not in self.sizes:
            raise volumes.VolumeNotFoundError(f"no volume is named {name}")
        return self._volume(name)

    def listing(self) -> list[volumes.Volume]:
        return [self._volume(n) for n in sorted(self.sizes)]

    def get(self, name: str) -> volumes.Volume | None:
        return self._volume(volumes.check_name(name)) if name in self.sizes else None

    def create(self, name: str, *, size_bytes: int) -> volumes.Volume:
        volumes.check_name(name)
        if name not in self.sizes:
            volumes.check_room(
                "kubelab-lab.volumes", available=self.capacity - sum(self.sizes.values()), requested=size_bytes
            )
            self.sizes[name] = size_bytes
        return self._volume(name)

    def delete(self, name: str) -> volumes.Volume | None:
        if name not in self.sizes:
            return None
        gone = self._volume(name)
        if gone.attached_to:
            raise volumes.VolumeConflictError(f"volume {name} is attached to {gone.attached_to}")
        del self.sizes[name]
        return gone

    def resize(self, name: str, *, size_bytes: int) -> volumes.Volume:
        now = self._existing(name)
        growth = volumes.check_growth(name, current=now.size_bytes, wanted=size_bytes)
        volumes.check_room("kubelab-lab.volumes", available=self.capacity - sum(self.sizes.values()), requested=growth)
        self.sizes[name] = size_bytes
        return self._volume(name)

    def attach(self, name: str, *, instance: str) -> volumes.Volume:
        now = self._existing(name)
        if now.attached_to == instance:
            return now
        if now.attached_to:
            raise volumes.VolumeConflictError(f"volume {name} is attached to {now.attached_to}")
        if instance not in self.disks:
            raise volumes.VolumeNotFoundError(f"no instance is named {instance}")
        held = "".join(volumes.disk_xml(path="/p", target=t, serial=s) for t, s in self.disks[instance].items())
        self.disks[instance][volumes.free_target([f"<domain><devices>{held}</devices></domain>"])] = now.id
        return self._volume(name)

    def detach(self, name: str, *, force: bool = False) -> volumes.Volume:
        now = self._existing(name)
        if not now.attached_to:
            return now
        if force:
            self.forced.append(name)
        elif self.running[now.attached_to] and now.attached_to in self.pending:
            raise volumes.VolumeBusyError(f"{now.attached_to} has not released volume {name}")
        del self.disks[now.attached_to][now.device]
        return self._volume(name)


Client = TestClient[Any, Any]


@pytest.fixture
async def api() -> AsyncIterator[tuple[Client, FakeVolumes]]:
    backend = FakeVolumes(capacity=10 * GIB, instances={"lab-worker1": True, "lab-worker2": False})

    async def listed() -> list[cloud.Instance]:
        return []

    client = TestClient(TestServer(application(token=TOKEN, instances=listed, volumes=backend)))
    await client.start_server()
    yield client, backend
    await client.close()


async def test_volumes_are_created_listed_resized_and_deleted_through_the_api(api: tuple[Client, FakeVolumes]) -> None:
    client, _backend = api
    assert (await client.get("/v1/volumes")).status == 401
    empty = await client.get("/v1/volumes", headers=AUTH)
    assert empty.status == 200 and await empty.json() == {"items": []}

    made = await client.put("/v1/volumes/pvc-a", json={"sizeBytes": GIB}, headers=AUTH)
    assert made.status == 200
    volume = await made.json()
    assert volume["name"] == "pvc-a" and volume["sizeBytes"] == GIB and volumes.is_id(volume["id"])
    assert volume["attachedTo"] == "" and volume["format"] == "qcow2" and volume["pool"] == "kubelab-lab.volumes"
    again = await client.put("/v1/volumes/pvc-a", json={"sizeBytes": 2 * GIB}, headers=AUTH)
    assert again.status == 200 and await again.json() == volume  # answered as it is
    assert await (await client.get("/v1/volumes/pvc-a", headers=AUTH)).json() == volume
    assert [v["name"] for v in (await (await client.get("/v1/volumes", headers=AUTH)).json())["items"]] == ["pvc-a"]

    grown = await client.post("/v1/volumes/pvc-a/resize", json={"sizeBytes": 3 * GIB}, headers=AUTH)
    assert grown.status == 200 and (await grown.json())["sizeBytes"] == 3 * GIB
    smaller = await client.post("/v1/volumes/pvc-a/resize", json={"sizeBytes": GIB}, headers=AUTH)
    assert smaller.status == 400 and "cannot shrink" in (await smaller.json())["error"]

    gone = await client.delete("/v1/volumes/pvc-a", headers=AUTH)
    assert gone.status == 200 and (await gone.json())["id"] == volume["id"]
    again_gone = await client.delete("/v1/volumes/pvc-a", headers=AUTH)
    assert again_gone.status == 404 and await again_gone.json() == {"error": "no volume is named pvc-a"}
    assert (await client.get("/v1/volumes/pvc-a", headers=AUTH)).status == 404


async def test_the_api_refuses_what_the_pool_or_the_body_cannot_give(api: tuple[Client, FakeVolumes]) -> None:
    client, _backend = api
    big = await client.put("/v1/volumes/pvc-big", json={"sizeBytes": 11 * GIB}, headers=AUTH)
    assert big.status == 507
    assert await big.json() == {
        "error": f"pool kubelab-lab.volumes has {10 * GIB} bytes available, {11 * GIB} requested"
    }
    cases = [
        ("/v1/volumes/pvc-b", {}, 400, "sizeBytes is required"),
        ("/v1/volumes/pvc-b", {"sizeBytes": -1}, 400, "must be positive"),
        ("/v1/volumes/PVC_b", {"sizeBytes": GIB}, 400, "DNS-1123"),
    ]
    for path, body, status, says in cases:
        answer = await client.put(path, json=body, headers=AUTH)
        assert answer.status == status and says in (await answer.json())["error"], (path, body)
    bad = await client.put("/v1/volumes/pvc-b", data="[1]", headers={**AUTH, "Content-Type": "application/json"})
    assert bad.status == 400 and await bad.json() == {"error": "the body must be a JSON object"}
    assert (await client.put("/v1/volumes/pvc-b", json={"sizeBytes": 9 * GIB}, headers=AUTH)).status == 200
    more = await client.post("/v1/volumes/pvc-b/resize", json={"sizeBytes": 12 * GIB}, headers=AUTH)
    assert more.status == 507 and "bytes available" in (await more.json())["error"]
    unknown = await client.post("/v1/volumes/pvc-z/resize", json={"sizeBytes": GIB}, headers=AUTH)
    assert unknown.status == 404


async def test_volumes_are_attached_and_detached_through_the_api(api: tuple[Client, FakeVolumes]) -> None:
    client, backend = api
    await client.put("/v1/volumes/pvc-a", json={"sizeBytes": GIB}, headers=AUTH)
    attach = "/v1/volumes/pvc-a/attachment"
    nowhere = await client.put(attach, json={"instance": "nowhere"}, headers=AUTH)
    assert nowhere.status == 404 and "no instance is named nowhere" in (await nowhere.json())["error"]
    assert (await client.put(attach, json={}, headers=AUTH)).status == 400
    done = await client.put(attach, json={"instance": "lab-worker1"}, headers=AUTH)
    assert done.status == 200
    held = await done.json()
    assert (held["attachedTo"], held["device"]) == ("lab-worker1", "vdb")
    assert await (await client.put(attach, json={"instance": "lab-worker1"}, headers=AUTH)).json() == held
    other = await client.put(attach, json={"instance": "lab-worker2"}, headers=AUTH)
    assert other.status == 409 and "attached to lab-worker1" in (await other.json())["error"]
    busy = await client.delete("/v1/volumes/pvc-a", headers=AUTH)
    assert busy.status == 409 and "attached to lab-worker1" in (await busy.json())["error"]

    backend.pending.add("lab-worker1")  # its guest does not let go
    waiting = await client.delete(attach, headers=AUTH)
    assert waiting.status == 503 and "has not released" in (await waiting.json())["error"]
    forced = await client.delete(attach + "?force=true", headers=AUTH)
    assert forced.status == 200 and (await forced.json())["attachedTo"] == "" and backend.forced == ["pvc-a"]
    assert (await client.delete(attach, headers=AUTH)).status == 200  # detached already: no error
    assert (await client.delete("/v1/volumes/pvc-z/attachment", headers=AUTH)).status == 404
    assert (await client.delete("/v1/volumes/pvc-a", headers=AUTH)).status == 200


async def test_a_cloud_without_volumes_has_none() -> None:
    async def listed() -> list[cloud.Instance]:
        return []

    client = TestClient(TestServer(application(token=TOKEN, instances=listed)))
    await client.start_server()
    try:
        for answer in (await client.get("/v1/volumes", headers=AUTH), await client.get("/v1/volumes/a", headers=AUTH)):
            assert answer.status == 404 and await answer.json() == {"error": "this cloud has no volumes"}
    finally:
        await client.close()


# --- the client ---------------------------------------------------------------------------------


async def test_the_cloud_providers_volume_calls_speak_the_api(api: tuple[Client, FakeVolumes]) -> None:
    client, _backend = api
    provider = CloudProvider(CloudConfig(str(client.make_url("")).rstrip("/"), TOKEN, Path("unused-ca.pem")))
    # plain HTTP to the test server: the session the provider would open with its CA, without TLS
    provider._session = aiohttp.ClientSession(headers=AUTH)
    try:
        made = await provider.create_volume("pvc-a", size_bytes=GIB)
        assert made["name"] == "pvc-a" and made["sizeBytes"] == GIB and made["attachedTo"] == ""
        assert await provider.volumes() == [made] and await provider.volume("pvc-a") == made
        assert await provider.volume("pvc-z") is None
        with pytest.raises(CloudError) as caught:
            await provider.create_volume("pvc-big", size_bytes=20 * GIB)
        assert caught.value.status == 507 and "bytes available" in str(caught.value)
        grown = await provider.resize_volume("pvc-a", size_bytes=2 * GIB)
        assert grown["sizeBytes"] == 2 * GIB
        held = await provider.attach_volume("pvc-a", instance="lab-worker2")
        assert (held["attachedTo"], held["device"]) == ("lab-worker2", "vdb")
        with pytest.raises(CloudError) as refused:
            await provider.delete_volume("pvc-a")
        assert refused.value.status == 409
        with pytest.raises(CloudError) as missing:
            await provider.attach_volume("pvc-z", instance="lab-worker2")
        assert missing.value.status == 404
        assert (await provider.detach_volume("pvc-a", force=True))["attachedTo"] == ""
        assert await provider.delete_volume("pvc-a") is True
        assert await provider.delete_volume("pvc-a") is False
    finally:
        await provider.__aexit__(None, None, None)
