"""A StatefulSet's disk when its worker is powered off: the volume drill of the fault report
(``kubelab_testing.drills.lose_volume_worker``, run by ``python -m benchmarks.faults --faults volume``).

The pod of a one-replica StatefulSet writes a token (its own uid) to its claim's disk, a qcow2 volume
hot-plugged into its worker. That worker is powered off. After the pod's toleration of the unreachable
node it is evicted, and stays Terminating: no kubelet can confirm it stopped. The drill then does what an
operator does for a node known to be shut down (kube's non-graceful node shutdown): taints the Node
``node.kubernetes.io/out-of-service=nodeshutdown:NoExecute``. The pod garbage collector force-deletes the
pod, the StatefulSet makes it again, the scheduler puts it on the other worker, the attach/detach
controller drops the crashed node's VolumeAttachment at once (the cloud detaches the disk from the
powered-off machine's configuration) and attaches the disk to the other worker, where the new pod reads
back the first pod's token. The drill always heals: the taint removed, the worker booted and Ready, the
StatefulSet and its claim deleted, the PersistentVolume (and the cloud volume) gone.

A grace period, a toleration, a force detach and a machine's boot: 5-8 minutes on TCG, which is why it is
in the long tier."""

from __future__ import annotations

from kubelab_testing import drills
from kubelab_testing.faults import Faults
from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab


def test_a_statefulset_pod_moves_with_its_data_when_its_worker_is_powered_off(
    kubelab_lab: Lab, kubelab_kubectl: Kubectl
) -> None:
    got = drills.lose_volume_worker(kubelab_lab, kubelab_kubectl, Faults(kubelab_lab))
    print(got.describe())
    workers = {w.name for w in kubelab_lab.workers}
    assert got.node in workers and got.moved_to in workers - {got.node}
    assert got.written and got.read_back == got.written  # the first pod's token, read by the new pod
    # kube's non-graceful node shutdown: the evicted pod stayed Terminating until the node was out of
    # service, and the disk (ReadWriteOnce) was attached to the other worker only once it left the crashed one
    assert got.stuck
    assert got.detached <= got.attached
    # healed: every node Ready again, nothing of the drill left (its volume went by reclaim policy Delete)
    assert drills.all_nodes_ready(kubelab_kubectl)
    assert not kubelab_kubectl("get", "pvc", drills.STATEFUL_CLAIM).ok
    taints = kubelab_kubectl.json("get", "node", got.node)["spec"].get("taints") or []
    assert not [t for t in taints if t["key"] == drills.OUT_OF_SERVICE], taints
