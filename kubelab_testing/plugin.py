"""pytest fixtures for suites that test a kubelab lab (the ``kubelab`` plugin: pyproject's pytest11 entry point).

The plugin loads in every pytest run of an environment kubelab is installed in, so two things hold:
every fixture's name starts with ``kubelab_`` (none stands in for another plugin's ``kubectl`` or a
suite's own), and this module imports nothing beyond pytest at import time (the rest is imported by the
fixtures a test asks for).

Which lab a session tests, first match:

1. ``--kubelab-create [--kubelab-name NAME] [--kubelab-up-args='--workers 1']``: one made for the session
   (``kubelab up``), removed afterwards (``kubelab down``);
2. ``--kubelab-name NAME``: a lab that is up (made with ``kubelab up --name NAME``);
3. the lab the suite asks for: a ``conftest.py`` that overrides ``kubelab_new_lab`` with a
   :class:`NewLab` gets it made for the session, and removed afterwards;
4. the lab named by ``$KUBELAB_LAB`` (default ``kubelab``), which must be up.

A lab made for the session lives in ``--kubelab-home`` if given, else in a KUBELAB_HOME of its own that
is removed with it; an existing lab is looked for in ``--kubelab-home``, else ``$KUBELAB_HOME``, else
``~/.kubelab``.

Fixtures:

- ``kubelab_lab``: the :class:`~kubelab_testing.lab.Lab` (name, files, nodes with roles and addresses,
  ``cli()``, ``ssh()``)
- ``kubelab_kubeconfig``: the path of its admin kubeconfig
- ``kubelab_kubectl``: the real kubectl bound to it (:class:`~kubelab_testing.kubectl.Kubectl`):
  ``kubelab_kubectl("get", "pods")`` gives ``code``, ``out``, ``err``; ``.ok(...)`` fails the test unless
  kubectl succeeded; ``.json(...)`` parses; ``.watch(...)`` follows ``get -w``
- ``kubelab_node_ssh``: ``kubelab_node_ssh(node, "command")`` runs a command on a node as root over ssh
- ``kubelab_faults``: ``crash(node)``, ``pause(node)``, ``partition(node)``, ``kill(node, component)``,
  ``heal(node=None, wait=False)``, ``list()``; faults left at the end of a test are healed
- ``kubelab_service_load``: ``kubelab_service_load(url)`` sends requests at a Service from the lab's
  network and says which failed (the share of failed requests during a fault, and when they stopped)
- ``kubelab_eventually``: :func:`~kubelab_testing.waiting.eventually`, polling a check until it returns
  something truthy, with a deadline
- ``kubelab_new_lab``: the lab the suite asks for (rule 3 above); None unless a conftest.py overrides it
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from kubelab_testing.commands import Result
    from kubelab_testing.faults import Faults
    from kubelab_testing.kubectl import Kubectl
    from kubelab_testing.lab import Lab
    from kubelab_testing.loadprobe import ServiceLoad

UP_TIMEOUT = 3600.0  # a lab made for the session: one kubelab command (up builds a guest image when cold)


@dataclass(frozen=True)
class NewLab:
    """A lab for the session to make (``kubelab up --name NAME FLAGS``) and remove afterwards."""

    name: str
    flags: tuple[str, ...] = ()
    home: Path | None = None  # None: a KUBELAB_HOME of its own, removed afterwards


@dataclass(frozen=True)
class ExistingLab:
    name: str
    home: Path


def which_lab(
    *, name: str | None, home: str | None, create: bool, up_args: str, new_lab: NewLab | None
) -> NewLab | ExistingLab:
    """The lab a session tests, from the command line's options and the suite's ``kubelab_new_lab`` (see
    the module's docstring for the order)."""
    given_home = Path(home) if home else None
    if create:
        return NewLab(name or os.environ.get("KUBELAB_LAB") or "kubelab", tuple(shlex.split(up_args)), given_home)
    if name is None and new_lab is not None:
        return new_lab if given_home is None else replace(new_lab, home=given_home)
    from provisioner.lab.paths import default_home  # noqa: PLC0415 - this module stays cheap to import

    return ExistingLab(name or os.environ.get("KUBELAB_LAB") or "kubelab", given_home or default_home())


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kubelab", "tests against a kubelab lab")
    group.addoption("--kubelab-name", default=None, help="the lab to test (default: $KUBELAB_LAB or kubelab)")
    group.addoption("--kubelab-home", default=None, help="the labs' state directory (default: $KUBELAB_HOME)")
    group.addoption(
        "--kubelab-create",
        action="store_true",
        help="create the lab for this session (kubelab up) and remove it afterwards (kubelab down)",
    )
    group.addoption("--kubelab-up-args", default="", help="more `kubelab up` flags when creating, e.g. '--workers 2'")


@pytest.fixture(scope="session")
def kubelab_new_lab() -> NewLab | None:
    """The lab this suite asks for when the command line names none; override it in the suite's conftest.py.
    None (this default): the suite tests a lab that is up."""
    return None


@pytest.fixture(scope="session")
def kubelab_lab(request: pytest.FixtureRequest, kubelab_new_lab: NewLab | None) -> Iterator[Lab]:
    from kubelab_testing.lab import Lab, created_lab  # noqa: PLC0415 - this module stays cheap to import

    config = request.config
    chosen = which_lab(
        name=config.getoption("--kubelab-name"),
        home=config.getoption("--kubelab-home"),
        create=config.getoption("--kubelab-create"),
        up_args=config.getoption("--kubelab-up-args"),
        new_lab=kubelab_new_lab,
    )
    if isinstance(chosen, ExistingLab):
        lab = Lab(chosen.name, chosen.home)
        if not lab.kubeconfig.exists():
            pytest.fail(
                f"lab {lab.name!r} does not exist in {lab.home}; create it with kubelab up, or pass --kubelab-create"
            )
        yield lab
        return
    with created_lab(chosen.name, chosen.flags, home=chosen.home, timeout=UP_TIMEOUT, show=True) as lab:
        yield lab


@pytest.fixture(scope="session")
def kubelab_kubeconfig(kubelab_lab: Lab) -> Path:
    return kubelab_lab.kubeconfig


@pytest.fixture(scope="session")
def kubelab_kubectl(kubelab_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    from kubelab_testing.kubectl import Kubectl  # noqa: PLC0415 - this module stays cheap to import

    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is not installed (it is the client these tests drive the lab with)")
    return Kubectl(kubelab_lab.kubeconfig, cache_dir=tmp_path_factory.mktemp("kubectl-cache"), binary=found)


@pytest.fixture(scope="session")
def kubelab_node_ssh(kubelab_lab: Lab) -> Callable[[str, str], Result]:
    def run(node: str, command: str) -> Result:
        return kubelab_lab.ssh(node, command)

    return run


@pytest.fixture
def kubelab_service_load(kubelab_lab: Lab) -> Iterator[Callable[..., ServiceLoad]]:
    """``kubelab_service_load(url, rate=5, seconds=900, deadline=1)`` starts a
    :class:`~kubelab_testing.loadprobe.ServiceLoad`; all stop after the test."""
    from kubelab_testing.loadprobe import DEADLINE, ServiceLoad  # noqa: PLC0415 - this module stays cheap to import

    started: list[ServiceLoad] = []

    def start(url: str, *, rate: float = 5.0, seconds: float = 900.0, deadline: float = DEADLINE) -> ServiceLoad:
        started.append(ServiceLoad(kubelab_lab, url, rate=rate, seconds=seconds, deadline=deadline))
        return started[-1]

    yield start
    for load in started:
        load.stop()


@pytest.fixture
def kubelab_faults(kubelab_lab: Lab) -> Iterator[Faults]:
    """Fault injection; whatever the test leaves broken is healed afterwards (and waited for)."""
    from kubelab_testing.faults import Faults  # noqa: PLC0415 - this module stays cheap to import

    faults = Faults(kubelab_lab)
    yield faults
    if "no faults" not in faults.list():
        faults.heal(wait=True)


@pytest.fixture(scope="session")
def kubelab_eventually() -> Callable[..., Any]:
    from kubelab_testing.waiting import eventually  # noqa: PLC0415 - this module stays cheap to import

    return eventually
