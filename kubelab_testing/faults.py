"""Breaking a VM lab on purpose from a test, through ``kubelab fault`` as a user would.

The command does the work (``provisioner.faults``); a test gets one method per fault, each printing
what was done and failing the test when the fault could not be injected, and ``heal`` to undo them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from kubelab_testing.lab import Lab

HEAL_TIMEOUT = 900.0  # heal --wait boots a crashed machine and waits for its node to be Ready
TIMEOUT = 300.0


@dataclass(frozen=True)
class Faults:
    lab: Lab

    def _run(self, *args: str, timeout: float = TIMEOUT) -> str:
        done = self.lab.cli("fault", *args, "--name", self.lab.name, timeout=timeout)
        out = done.checked(f"kubelab fault {shlex.join(args)}")
        print(out, end="")
        return out

    def crash(self, node: str) -> str:
        return self._run("crash", node)

    def pause(self, node: str) -> str:
        return self._run("pause", node)

    def partition(self, node: str) -> str:
        return self._run("partition", node)

    def kill(self, node: str, component: str) -> str:
        return self._run("kill", node, component)

    def heal(self, node: str | None = None, *, wait: bool = False) -> str:
        return self._run("heal", *([node] if node else []), *(["--wait"] if wait else []), timeout=HEAL_TIMEOUT)

    def list(self) -> str:
        return self._run("list")
