"""A lab's lifecycle under crashes and concurrency: a hypothesis state machine runs `kubelab up`, `down`,
`stop`, `start` and `fault` on three local labs in one KUBELAB_HOME (two run the control plane alone,
one also a real node: containerd, kubelet and proxy in a network namespace), through the real command.
Half of the single commands are killed with SIGKILL, after a number of output lines (`up` prints one per
step) or after a delay; other steps run two commands at once, mostly on one lab, sometimes on two, or
lose a lab's state (its directory deleted, or its settings made unreadable) before `kubelab down`.
After every step the host must agree with the labs' state (kubelab_testing.lifecycle says what that
means), and every `up` left to finish, also right after a killed one, must bring its lab up.

It fits the integration tier's time: four examples of fifteen steps (about two minutes here),
derandomized so that every run makes the same choices; without shrinking, since every try starts and
kills real labs."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from kubelab_testing.lifecycle import Fleet, Kill, Step
from provisioner.system import packages
from tests.support.components import require

# the labs by index: every example has labs of its own names, so that what a failed one left behind cannot
# disturb the next (or hypothesis's replay of the failure)
LAB = st.sampled_from((0, 1, 2))
NODE_LAB = 2  # the one with a real node

# the simplest choice first: hypothesis tries the simplest example first, here fifteen `up`s of one lab, each
# killed after its first line (the state written, nothing started yet)
KILLS = st.one_of(
    st.builds(Kill, lines=st.integers(1, 12)),
    st.none(),
    st.none(),
    st.builds(Kill, seconds=st.integers(2, 80).map(lambda tenths: tenths / 10)),
)
COMMANDS = st.sampled_from(("up", "down", "up", "stop", "start", "up", "down", "fault"))


class Lifecycle(RuleBasedStateMachine):
    # hypothesis orders rules by their number of arguments (then by name), and its simplest example takes the
    # first: `command`, with one
    def __init__(self) -> None:
        super().__init__()
        self.home = Path(tempfile.mkdtemp(prefix="kubelab-crash-"))
        self.labs = [f"cr{uuid.uuid4().hex[:4]}{letter}" for letter in "abc"]
        self.fleet = Fleet(self.home, self.labs, with_node=[self.labs[NODE_LAB]], say=print)

    def _ok(self, problems: list[str]) -> None:
        for problem in problems:
            print(f"  PROBLEM: {problem}", flush=True)
        assert not problems, problems

    @rule(what=st.tuples(LAB, COMMANDS, KILLS))
    def command(self, what: tuple[int, str, Kill | None]) -> None:
        """One command on one lab (index, command, kill)."""
        lab, command, kill = what
        self._ok(self.fleet.run(Step(self.labs[lab], command, kill)))

    @rule(lab=LAB, how=st.sampled_from(("removed", "damaged")))
    def state_lost(self, lab: int, how: str) -> None:
        """The lab's state directory deleted or its settings made unreadable, then `kubelab down`."""
        self._ok(self.fleet.lose(self.labs[lab], how))

    @rule(lab=LAB, first=COMMANDS, second=COMMANDS, other=st.sampled_from((None, None, 0, 1, 2)))
    def two_commands(self, lab: int, first: str, second: str, other: int | None) -> None:
        """At once, mostly on one lab (``other``: None), sometimes on two."""
        second_lab = self.labs[lab if other is None else other]
        self._ok(self.fleet.together(Step(self.labs[lab], first), Step(second_lab, second)))

    @invariant()
    def host_agrees_with_the_labs(self) -> None:
        self._ok(self.fleet.check())

    def teardown(self) -> None:
        try:
            problems = self.fleet.clean()
        finally:
            shutil.rmtree(self.home, ignore_errors=True)
        self._ok(problems)


SETTINGS = settings(
    max_examples=4,
    stateful_step_count=15,
    derandomize=True,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


def test_labs_survive_kills_and_concurrent_commands() -> None:
    require(packages.ETCD, packages.REGISTRY, packages.SKOPEO, packages.IPROUTE)
    require(packages.CONTAINERD, packages.CTR, packages.RUNC, packages.CNI_BRIDGE, packages.NFT)
    run_state_machine_as_test(Lifecycle, settings=SETTINGS)
