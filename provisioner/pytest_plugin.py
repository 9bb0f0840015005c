"""pytest fixtures for end-to-end suites against a kubelab lab (loaded as the ``kubelab`` plugin).

Point a suite at a lab that is up (``pytest --kubelab-name mylab``), or let the session create one
and remove it afterwards (``pytest --kubelab-create --kubelab-up-args='--workers 2'``). Fixtures:

- ``kubelab_lab``: the lab (name, kubeconfig, nodes and their roles and addresses)
- ``kubeconfig``: the path of its admin kubeconfig
- ``kubectl``: the real kubectl bound to that kubeconfig; ``kubectl("get", "pods")`` returns a result
  with ``code``, ``out``, ``err``; ``kubectl.ok(...)`` asserts success; ``kubectl.json(...)`` parses
- ``node_ssh``: ``node_ssh(node, "command")`` runs a command on a node as root over ssh
- ``eventually``: poll a check until it returns something truthy, with a deadline
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    ip: str


@dataclass(frozen=True)
class Lab:
    name: str
    home: Path

    @property
    def root(self) -> Path:
        return self.home / self.name

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def ssh_config(self) -> Path:
        return self.root / "ssh_config"

    @property
    def spec(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.root / "lab.json").read_text())
        return data

    @property
    def nodes(self) -> list[Node]:
        from provisioner import spec as labspec  # noqa: PLC0415 - keeps plugin loading light
        from provisioner import vmplan  # noqa: PLC0415

        spec = labspec.LabSpec.from_json((self.root / "lab.json").read_text())
        return [Node(m.name, m.role, m.ip) for m in vmplan.machines(spec)]

    @property
    def workers(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "worker"]

    @property
    def master(self) -> Node:
        return self.nodes[0]

    def cli(self, *args: str, timeout: float = 1800) -> Result:
        """Run ``kubelab ARGS`` for this lab (``--name`` is added where the command takes it)."""
        env = dict(os.environ, KUBELAB_HOME=str(self.home))
        argv = [sys.executable, "-m", "provisioner.cli", *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        return Result(done.returncode, done.stdout, done.stderr)

    def ssh(self, node: str, command: str, *, timeout: float = 120) -> Result:
        argv = ["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", node, command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        return Result(done.returncode, done.stdout, done.stderr)

    def on_lab_network(self, argv: list[str]) -> list[str]:
        """``argv`` run where the lab's machines are reachable (inside kubelab's namespace if it has one)."""
        from provisioner import libvirthost  # noqa: PLC0415

        daemon = libvirthost.current()
        return daemon.wrap(argv) if daemon is not None else argv


@dataclass(frozen=True)
class Kubectl:
    kubeconfig: Path
    binary: str = "kubectl"

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 120) -> Result:
        argv = [self.binary, "--kubeconfig", str(self.kubeconfig), *args]
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
        return Result(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        result = self(*args, stdin=stdin, timeout=timeout)
        assert result.ok, f"kubectl {shlex.join(args)} failed ({result.code}): {result.err}{result.out}"
        return result.out

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json"))


def eventually(check: Callable[[], Any], *, timeout: float = 60.0, interval: float = 1.0, what: str = "") -> Any:
    """``check()``'s first truthy value, polled every ``interval`` until ``timeout``; fails the test otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            pytest.fail(f"{what or 'condition'} did not hold within {timeout:.0f}s (last: {last!r})")
        time.sleep(interval)


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
    from provisioner.labpaths import default_home  # noqa: PLC0415

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


@pytest.fixture(name="eventually")
def eventually_fixture() -> Callable[..., Any]:
    return eventually
