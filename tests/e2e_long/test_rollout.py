"""The rollout drill without a fault, in the long tier: a 6-replica Deployment whose pods sleep in a
preStop hook (as users drain theirs), rolled to a new version while requests flow at its NodePort
from the lab network (``kubelab_testing.drills``), loses no request."""

from __future__ import annotations

from collections.abc import Callable

from kubelab_testing import drills as drill
from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from kubelab_testing.loadprobe import ServiceLoad


def test_a_rolling_update_with_a_pre_stop_sleep_loses_no_request(
    kubelab_lab: Lab, kubelab_kubectl: Kubectl, kubelab_service_load: Callable[..., ServiceLoad]
) -> None:
    drained = drill.Rolled.create(kubelab_kubectl, name=drill.DRAINED, pre_stop=True)
    try:
        # the NodePort on the master, where no pod of the drill runs
        url = drained.entry(kubelab_lab, avoid=kubelab_lab.workers[0].name)
        load = kubelab_service_load(url, deadline=drill.ROLLOUT_DEADLINE)
        drill.warm(load)
        figures = drill.drained_rollout(drained, load=load)
        print(f"\n{figures.describe()}")
        assert figures.requests.requests >= 20  # 5 a second through a rollout of several seconds
        assert figures.requests.failed == 0, figures.describe()
    finally:
        drained.delete()
