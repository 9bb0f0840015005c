"""pytest fixtures for end-to-end suites against a kubelab lab (loaded as the ``kubelab`` plugin).

Point a suite at a lab that is up (``pytest --kubelab-name mylab``), or let the session create one
and remove it afterwards (``pytest --kubelab-create --kubelab-up-args='--workers 2'``). Fixtures:

- ``kubelab_lab``: the lab (name, kubeconfig, nodes and their roles and addresses)
- ``kubeconfig``: the path of its admin kubeconfig
- ``kubectl``: the real kubectl bound to that kubeconfig; ``kubectl("get", "pods")`` returns a result
  with ``code``, ``out``, ``err``; ``kubectl.ok(...)`` asserts success; ``kubectl.json(...)`` parses
- ``node_ssh``: ``node_ssh(node, "command")`` runs a command on a node as root over ssh
- ``kubelab_faults``: ``crash(node)``, ``pause(node)``, ``partition(node)``, ``kill(node, component)``,
  ``heal(node=None, wait=False)``, ``list()``; faults left at the end of a test are healed
- ``service_load``: ``service_load(url)`` sends requests at a Service from the lab's network and says
  which failed (the share of failed requests during a fault, and when they stopped)
- ``eventually``: poll a check until it returns something truthy, with a deadline
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kubelab_testing.lab import Faults, Kubectl, Lab, NotInTime, Result, ServiceLoad, eventually

__all__ = ["Faults", "Kubectl", "Lab", "NotInTime", "Result", "ServiceLoad", "created_lab", "eventually"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kubelab", "end-to-end tests against a kubelab lab")
    group.addoption("--kubelab-name", default=None, help="the lab to test (default: $KUBELAB_LAB or kubelab)")
    group.addoption("--kubelab-home", default=None, help="the labs' state directory (default: $KUBELAB_HOME)")
    group.addoption(
        "--kubelab-create",
        action="store_true",
        help="create the lab for this session (kubelab up) and remove it afterwards (kubelab down)",
    )
    group.addoption("--kubelab-up-args", default="", help="more `kubelab up` flags when creating, e.g. '--workers 2'")


def _home(config: pytest.Config) -> Path:
    from provisioner.lab.paths import default_home  # noqa: PLC0415

    given = config.getoption("--kubelab-home")
    return Path(given) if given else default_home()


@pytest.fixture(scope="session")
def kubelab_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    config = request.config
    name = config.getoption("--kubelab-name") or os.environ.get("KUBELAB_LAB") or "kubelab"
    if not config.getoption("--kubelab-create"):
        lab = Lab(name, _home(config))
        if not lab.kubeconfig.exists():
            pytest.fail(
                f"lab {name!r} does not exist in {lab.home}; create it with kubelab up, or pass --kubelab-create"
            )
        yield lab
        return
    with created_lab(name, shlex.split(config.getoption("--kubelab-up-args")), home=_home(config)) as lab:
        yield lab


class LabFailed(Exception):
    """``kubelab up`` did not finish."""


def create(name: str, flags: list[str], *, home: Path | None = None) -> Lab:
    """``kubelab up`` with ``flags``; its output is printed as it comes (the progress of a long run)."""
    lab = Lab(name, home or Path(tempfile.mkdtemp(prefix="kubelab-e2e-")))
    env = dict(os.environ, KUBELAB_HOME=str(lab.home))
    argv = [sys.executable, "-m", "provisioner.cli", "up", "--name", name, *flags]
    done = subprocess.run(argv, env=env, check=False, timeout=3600)
    if done.returncode != 0:
        raise LabFailed(f"kubelab up failed (exit code {done.returncode}); its output is above")
    return lab


@contextmanager
def created_lab(name: str, flags: list[str], *, home: Path | None = None) -> Iterator[Lab]:
    """A lab made for a session: ``kubelab up`` on entry, ``kubelab down`` on exit whatever happens."""
    own_home = home is None
    lab = Lab(name, home or Path(tempfile.mkdtemp(prefix="kubelab-e2e-")))
    try:
        yield create(name, flags, home=lab.home)
    finally:
        lab.cli("down", "--name", name)
        if own_home:
            shutil.rmtree(lab.home, ignore_errors=True)


@pytest.fixture(scope="session")
def kubeconfig(kubelab_lab: Lab) -> Path:
    return kubelab_lab.kubeconfig


@pytest.fixture(scope="session")
def kubectl(kubelab_lab: Lab) -> Kubectl:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is not installed (it is the client these tests drive the lab with)")
    return Kubectl(kubelab_lab.kubeconfig, found)


@pytest.fixture(scope="session")
def node_ssh(kubelab_lab: Lab) -> Callable[[str, str], Result]:
    def run(node: str, command: str) -> Result:
        return kubelab_lab.ssh(node, command)

    return run


@pytest.fixture
def service_load(kubelab_lab: Lab) -> Iterator[Callable[..., ServiceLoad]]:
    """``service_load(url, rate=5, seconds=900)`` starts a :class:`ServiceLoad`; all stop after the test."""
    started: list[ServiceLoad] = []

    def start(url: str, *, rate: float = 5.0, seconds: float = 900.0) -> ServiceLoad:
        started.append(ServiceLoad(kubelab_lab, url, rate=rate, seconds=seconds))
        return started[-1]

    yield start
    for load in started:
        load.stop()


@pytest.fixture
def kubelab_faults(kubelab_lab: Lab) -> Iterator[Faults]:
    """Fault injection; whatever the test leaves broken is healed afterwards (and waited for)."""
    faults = Faults(kubelab_lab)
    yield faults
    if "no faults" not in faults.list():
        faults.heal(wait=True)


@pytest.fixture(name="eventually")
def eventually_fixture() -> Callable[..., Any]:
    return eventually
