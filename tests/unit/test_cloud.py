"""The lab's cloud: instances from libvirt's facts (pure), and its API over HTTP with its token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from provisioner.cloud import instances as cloud
from provisioner.cloud.server import application

UUID = "0f8b7c1e-3a52-4d0e-9a57-5e0c1b2d3f4a"
TOKEN = "s3cret-token"


def test_an_instance_in_a_clouds_terms() -> None:
    facts = cloud.DomainFacts("lab-worker1", UUID, 1, 1, 1024 * 1024)
    found = cloud.instance(facts, address="192.168.123.11", zone="host-a")
    assert found.json() == {
        "name": "lab-worker1",
        "providerID": f"libvirt://{UUID}",
        "state": "running",
        "addresses": [
            {"type": "InternalIP", "address": "192.168.123.11"},
            {"type": "Hostname", "address": "lab-worker1"},
        ],
        "region": "kubelab",
        "zone": "host-a",
        "instanceType": "kubelab.1cpu.1gib",
    }
    assert cloud.instance_type(2, 1536 * 1024) == "kubelab.2cpu.1536mib"
    stopped = cloud.instance(cloud.DomainFacts("lab-master", UUID, 5, 2, 2 << 20), address=None, zone="z")
    assert stopped.state == "stopped" and stopped.addresses == (("Hostname", "lab-master"),)


def test_provider_ids_and_lookup() -> None:
    assert cloud.uuid_of(f"libvirt://{UUID}") == UUID
    assert cloud.uuid_of("aws:///eu-west-1a/i-1") is None and cloud.uuid_of("libvirt://") is None
    one = cloud.instance(cloud.DomainFacts("a", UUID, 1, 1, 1 << 20), address="10.0.0.2", zone="z")
    assert cloud.find([one], "a") is one and cloud.find([one], f"libvirt://{UUID}") is one
    assert cloud.find([one], "b") is None and cloud.find([one], "libvirt://other") is None


@pytest.fixture
async def api() -> AsyncIterator[TestClient[Any, Any]]:
    machines = [
        cloud.instance(cloud.DomainFacts("lab-master", UUID, 1, 2, 2 << 20), address="10.0.0.10", zone="z"),
        cloud.instance(
            cloud.DomainFacts("lab-worker1", UUID.replace("0f", "1f"), 3, 1, 1 << 20), address="10.0.0.11", zone="z"
        ),
    ]

    async def listed() -> list[cloud.Instance]:
        return list(machines)

    client = TestClient(TestServer(application(token=TOKEN, instances=listed)))
    await client.start_server()
    yield client
    await client.close()


async def test_the_api_answers_only_with_its_token(api: TestClient[Any, Any]) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        refused = await api.get("/v1/instances", headers=headers)
        assert refused.status == 401
        assert (await refused.json()) == {"error": "a bearer token of this cloud is required"}


async def test_instances_listed_and_found_by_name_or_provider_id(api: TestClient[Any, Any]) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    listed = await (await api.get("/v1/instances", headers=auth)).json()
    assert [(i["name"], i["state"]) for i in listed["items"]] == [("lab-master", "running"), ("lab-worker1", "paused")]
    one = await api.get("/v1/instances/lab-worker1", headers=auth)
    assert one.status == 200 and (await one.json())["addresses"][0] == {"type": "InternalIP", "address": "10.0.0.11"}
    by_id = await api.get("/v1/instances", params={"providerID": f"libvirt://{UUID}"}, headers=auth)
    assert (await by_id.json())["name"] == "lab-master"
    gone = await api.get("/v1/instances/lab-worker9", headers=auth)
    assert gone.status == 404 and (await gone.json()) == {"error": "no instance is named lab-worker9"}
    unknown = await api.get("/v1/instances", params={"providerID": "libvirt://nope"}, headers=auth)
    assert unknown.status == 404
