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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Command:
    """One command on one lab, maybe killed."""

    lab: int
    command: str
    kill: Kill | None


@dataclass(frozen=True)
class TwoCommands:
    """Two commands at once: on one lab, or on ``lab`` and ``other``."""

    lab: int
    first: str
    second: str
    other: int | None


@dataclass(frozen=True)
class StateLost:
    """The lab's state directory deleted ("removed") or its settings made unreadable ("damaged"), then down."""

    lab: int
    how: str


# hypothesis tries the simplest example first: here fifteen `up`s of one lab, each killed after its first
# line (the state written, nothing started yet)
KILLS = st.one_of(
    st.builds(Kill, lines=st.integers(1, 12)),
    st.none(),
    st.none(),
    st.builds(Kill, seconds=st.integers(2, 80).map(lambda tenths: tenths / 10)),
)
COMMANDS = st.sampled_from(("up", "down", "up", "stop", "start", "up", "down", "fault"))
KINDS = (
    st.builds(Command, LAB, COMMANDS, KILLS),
    st.builds(TwoCommands, LAB, COMMANDS, COMMANDS, st.sampled_from((None, None, 0, 1, 2))),
    st.builds(StateLost, LAB, st.sampled_from(("removed", "damaged"))),
)
# one rule for every kind of step, chosen here (half single commands, three in ten two at once, two in ten a
# lost state): hypothesis leaves some rules out of each example (swarm testing), which would leave examples
# without kills
STEPS = st.integers(0, 9).flatmap(lambda i: KINDS[0] if i < 5 else KINDS[1] if i < 8 else KINDS[2])


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.home = Path(tempfile.mkdtemp(prefix="kubelab-crash-"))
        self.labs = [f"cr{uuid.uuid4().hex[:4]}{letter}" for letter in "abc"]
        self.fleet = Fleet(self.home, self.labs, with_node=[self.labs[NODE_LAB]], say=print)

    def _ok(self, problems: list[str]) -> None:
        for problem in problems:
            print(f"  PROBLEM: {problem}", flush=True)
        assert not problems, problems

    @rule(step=STEPS)
    def act(self, step: Command | TwoCommands | StateLost) -> None:
        labs = self.labs
        if isinstance(step, Command):
            self._ok(self.fleet.run(Step(labs[step.lab], step.command, step.kill)))
        elif isinstance(step, TwoCommands):
            second = labs[step.lab if step.other is None else step.other]
            self._ok(self.fleet.together(Step(labs[step.lab], step.first), Step(second, step.second)))
        else:
            self._ok(self.fleet.lose(labs[step.lab], step.how))

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
    max_examples=3,
    stateful_step_count=12,
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
