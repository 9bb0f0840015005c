"""Scenario 10, the fault drills: faults injected with `kubelab fault` while a 6-replica Deployment
behind a NodePort Service is rolled to a new version and requests flow at the Service from the lab
network (``kubelab_testing.drills``):

- a crashed, then a partitioned worker is NotReady within the grace period, its pods are replaced on
  the other worker within grace + tolerationSeconds, and after heal the Deployment converges with all
  replicas of the new version Ready and nothing duplicated;
- each component killed in turn is restarted by systemd and the cluster converges, with no object in
  etcd lost or damaged (full dumps compared); the kubelet's and containerd's restarts leave running
  containers alone;
- the master powered off and on again keeps every object.

The rollout drill without a fault (a preStop sleep loses no request) is in the long tier
(tests/e2e_long/test_rollout.py): it is long, and needs no fault.

Each fault prints its figures: when it was noticed, when the pods moved, when all was well again, and
the share of failed requests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from kubelab_testing import drills as drill
from kubelab_testing.faults import Faults
from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from kubelab_testing.loadprobe import ServiceLoad
from kubelab_testing.waiting import eventually
from provisioner.lab.components import master_only

# the node controller's monitor period (5 s) and the kubelet's heartbeat interval (10 s)
MONITOR_SLACK = 15
# creating and binding the replacements once the pods are evicted
REPLACE_SLACK = 30


@pytest.fixture(scope="module")
def rolled(kubelab_kubectl: Kubectl) -> Iterator[drill.Rolled]:
    rolled = drill.Rolled.create(kubelab_kubectl)
    yield rolled
    rolled.delete()


def _requests_recovered(what: str, load: ServiceLoad, since: float) -> None:
    summary = load.summary(since)
    assert summary.requests > 0
    assert summary.failed_share < 0.75, f"{what}: the Service stopped answering ({summary.describe()})"

    # the last steps of the rollout stop old pods that may still get a request (these have no preStop hook)
    def quiet() -> bool:
        tail = [s for s in load.samples() if s.t >= time.time() - 10]
        return len(tail) >= 20 and all(s.ok for s in tail)

    eventually(quiet, timeout=120, interval=2, what=f"{what}: 10 s of requests without a failure")


@pytest.mark.parametrize("fault", ["crash", "partition"])
def test_a_lost_worker_is_noticed_its_pods_replaced_and_healed_without_duplicates(
    *,
    fault: str,
    kubelab_lab: Lab,
    kubelab_kubectl: Kubectl,
    kubelab_faults: Faults,
    kubelab_service_load: Callable[..., ServiceLoad],
    rolled: drill.Rolled,
) -> None:
    node = (kubelab_lab.workers[-1] if fault == "crash" else kubelab_lab.workers[0]).name
    grace = float(kubelab_lab.spec["node_grace_period"])
    assert any(p["spec"]["nodeName"] == node for p in rolled.pods())
    load = kubelab_service_load(rolled.entry(kubelab_lab, avoid=node))
    drill.warm(load)

    figures = drill.lose_worker(kubelab_lab, kubelab_kubectl, kubelab_faults, rolled, load=load, fault=fault, node=node)
    print(f"\n{figures.describe()} (grace {grace:.0f}s, toleration {drill.TOLERATION}s)")
    assert figures.detected is not None and figures.detected <= grace + MONITOR_SLACK
    assert figures.replaced is not None
    assert figures.replaced <= grace + MONITOR_SLACK + drill.TOLERATION + REPLACE_SLACK
    assert rolled.converged()  # every replica of the new version, nothing left over
    _requests_recovered(figures.describe(), load, time.time() - figures.recovered)


def test_each_component_killed_in_turn_comes_back_and_etcd_keeps_every_object(
    kubelab_lab: Lab,
    kubelab_kubectl: Kubectl,
    kubelab_faults: Faults,
    kubelab_service_load: Callable[..., ServiceLoad],
    rolled: drill.Rolled,
) -> None:
    worker = kubelab_lab.workers[0].name
    load = kubelab_service_load(rolled.entry(kubelab_lab, avoid=worker))
    drill.warm(load)
    before = drill.etcd_dump(kubelab_lab)
    assert drill.lasting(before) > 20
    began = time.time()
    rolled.next()
    for component in drill.KILLS:
        node = kubelab_lab.master.name if master_only(component) else worker
        figures = drill.kill(kubelab_lab, kubelab_kubectl, kubelab_faults, rolled, node=node, component=component)
        print(f"\n{figures.describe()}")
        assert figures.containers_kept in (None, True), figures.describe()
    rolled.wait()
    print(f"kills: {load.summary(began).describe()}")
    _requests_recovered("kills", load, began)
    assert drill.dump_damage(before, drill.etcd_dump(kubelab_lab)) == []


def test_the_master_powered_off_and_on_keeps_every_object(
    kubelab_lab: Lab, kubelab_kubectl: Kubectl, kubelab_faults: Faults, rolled: drill.Rolled
) -> None:
    witness = f"survives-power-loss-{int(time.time())}"
    kubelab_kubectl.ok("create", "configmap", witness, "--from-literal=answer=42")
    before = drill.etcd_dump(kubelab_lab)
    began = time.time()
    kubelab_faults.crash(kubelab_lab.master.name)
    kubelab_faults.heal(kubelab_lab.master.name, wait=True)
    eventually(lambda: drill.all_nodes_ready(kubelab_kubectl), timeout=300, interval=2, what="every node Ready")
    rolled.wait()
    print(f"\ncrash {kubelab_lab.master.name}: every node Ready, {drill.NAME} converged +{time.time() - began:.1f}s")
    assert kubelab_kubectl.json("get", "configmap", witness)["data"] == {"answer": "42"}
    assert drill.dump_damage(before, drill.etcd_dump(kubelab_lab)) == []
    kubelab_kubectl.ok("delete", "configmap", witness)
