"""The lab's cloud on the VMs: a worker's machine removed by hand (its libvirt domain destroyed and
undefined, as if someone deleted the instance in a cloud's console) takes its Node with it, deleted by
the cloud-controller-manager once the node stops being Ready; `kubelab up` then brings the machine back
and its new Node is initialized from the cloud with the new machine's provider ID.

It waits for the node monitor's grace (40 s) and an `up` that boots a machine: about 4 minutes on TCG,
which is why it is in the long tier."""

from __future__ import annotations

import time

from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from provisioner.drivers.libvirt import daemon as libvirthost


def _provider_id(kubectl: Kubectl, node: str) -> str:
    found = kubectl("get", "node", node, "-o", "jsonpath={.spec.providerID}")
    return found.out.strip() if found.ok else ""


def test_a_machine_removed_by_hand_takes_its_node_and_up_brings_both_back(
    kubelab_lab: Lab, kubelab_kubectl: Kubectl
) -> None:
    import libvirt  # noqa: PLC0415 - the VM tier's own dependency

    worker = kubelab_lab.workers[-1].name
    before = _provider_id(kubelab_kubectl, worker)
    assert before.startswith("libvirt://"), before
    running = libvirthost.current()
    assert running is not None, "no libvirtd answers"
    conn = libvirt.open(running.uri)
    try:
        domain = conn.lookupByName(worker)
        assert before == f"libvirt://{domain.UUIDString()}"
        began = time.monotonic()
        domain.destroy()
        domain.undefine()
    finally:
        conn.close()

    eventually(lambda: not kubelab_kubectl("get", "node", worker).ok, timeout=180, interval=2, what=f"{worker} deleted")
    print(f"{worker}: Node deleted {time.monotonic() - began:.1f}s after its machine was removed")
    events = kubelab_kubectl.ok("get", "events", "-A", "--field-selector", f"involvedObject.name={worker}")
    assert "DeletingNode" in events, events

    back = kubelab_lab.cli("up", "--name", kubelab_lab.name)
    assert back.ok, back.out + back.err
    eventually(
        lambda: _provider_id(kubelab_kubectl, worker).startswith("libvirt://"),
        timeout=120,
        what=f"{worker} registered again and initialized from the cloud",
    )
    after = _provider_id(kubelab_kubectl, worker)
    assert after != before  # a new machine: a new instance
    kubelab_kubectl.ok("wait", "--for=condition=Ready", f"node/{worker}", "--timeout=180s", timeout=200)
