"""The kubelab pytest plugin: cheap to import, fixtures that cannot collide, and which lab a session tests.

Suites are run in-process with pytest's own ``pytester`` against a lab's files made here, so that the
plugin is exercised as pytest loads it, without a lab running.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubelab_testing.plugin import ExistingLab, NewLab, which_lab
from provisioner.lab.spec import LabSpec

pytest_plugins = ["pytester"]
INNER = ("-p", "no:cacheprovider", "-p", "no:asyncio")  # the inner sessions need neither

FIXTURES = {
    "kubelab_new_lab",
    "kubelab_lab",
    "kubelab_kubeconfig",
    "kubelab_kubectl",
    "kubelab_node_ssh",
    "kubelab_faults",
    "kubelab_service_load",
    "kubelab_eventually",
}


def test_importing_the_plugin_loads_nothing_of_kubelab_but_itself() -> None:
    ours = ("provisioner", "agents", "kubelab_testing", "yaml")
    probe = f"import sys, kubelab_testing.plugin; print(sorted(m for m in sys.modules if m.split('.')[0] in {ours}))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['kubelab_testing', 'kubelab_testing.plugin']"


def test_every_fixture_of_the_plugin_is_named_kubelab_something(pytester: pytest.Pytester) -> None:
    listed = pytester.runpytest_inprocess("--fixtures", *INNER).stdout.str()
    section = listed.split("fixtures defined from kubelab_testing.plugin", 1)[1].split("\n---", 1)[0]
    names = {line.split()[0] for line in section.splitlines() if line and not line.startswith((" ", "-"))}
    assert names == FIXTURES
    assert not {"kubectl", "kubeconfig", "eventually", "node_ssh", "service_load"} & names


def test_the_command_line_wins_then_the_suite_then_kubelab_lab(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBELAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KUBELAB_LAB", raising=False)
    suite = NewLab("e2e", ("--workers", "2"))

    def chosen(**options: object) -> NewLab | ExistingLab:
        given: dict[str, object] = {"name": None, "home": None, "create": False, "up_args": "", "new_lab": suite}
        return which_lab(**{**given, **options})  # type: ignore[arg-type]

    assert chosen() == suite
    assert chosen(home="/labs") == NewLab("e2e", ("--workers", "2"), Path("/labs"))
    assert chosen(name="mine") == ExistingLab("mine", tmp_path / "home")
    assert chosen(name="mine", home="/labs") == ExistingLab("mine", Path("/labs"))
    assert chosen(create=True, up_args="--workers 1") == NewLab("kubelab", ("--workers", "1"))
    assert chosen(create=True, name="x") == NewLab("x")
    assert chosen(new_lab=None) == ExistingLab("kubelab", tmp_path / "home")
    monkeypatch.setenv("KUBELAB_LAB", "daily")
    assert chosen(new_lab=None) == ExistingLab("daily", tmp_path / "home")
    assert chosen() == suite  # a suite's own lab is never swapped for the user's by the environment


def _lab_files(home: Path, name: str) -> None:
    (home / name).mkdir(parents=True)
    (home / name / "lab.json").write_text(LabSpec(name=name, api_port=7443).to_json())
    (home / name / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")


SUITE = """
import importlib.metadata
import json
from pathlib import Path

def test_lab(kubelab_lab, kubelab_kubeconfig, kubelab_kubectl, kubelab_eventually):
    report = {
        "name": kubelab_lab.name,
        "home": str(kubelab_lab.home),
        "server": kubelab_lab.server,
        "kubeconfig": str(kubelab_kubeconfig),
        "kubectl_kubeconfig": str(kubelab_kubectl.kubeconfig),
        "cache": kubelab_kubectl.cache_dir is not None,
        "eventually": kubelab_eventually(lambda: 42, timeout=1),
    }
    Path("report.json").write_text(json.dumps(report))
"""


def test_a_suite_pointed_at_a_lab_gets_it_through_the_fixtures(pytester: pytest.Pytester, tmp_path: Path) -> None:
    _lab_files(tmp_path / "labs", "mine")
    pytester.makepyfile(test_suite=SUITE)
    # the suite asks for a lab of its own; the command line's lab wins
    pytester.makeconftest(
        "import pytest\nfrom kubelab_testing.plugin import NewLab\n"
        "@pytest.fixture(scope='session')\ndef kubelab_new_lab():\n    return NewLab('never', ('--workers', '9'))\n"
    )
    result = pytester.runpytest_inprocess(*INNER, "--kubelab-name", "mine", "--kubelab-home", str(tmp_path / "labs"))
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / "report.json").read_text())
    assert report == {
        "name": "mine",
        "home": str(tmp_path / "labs"),
        "server": "https://127.0.0.1:7443",
        "kubeconfig": str(tmp_path / "labs" / "mine" / "kubeconfig"),
        "kubectl_kubeconfig": str(tmp_path / "labs" / "mine" / "kubeconfig"),
        "cache": True,
        "eventually": 42,
    }


def test_a_lab_that_is_not_there_errors_the_suite_saying_how_to_make_one(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_inprocess(*INNER, "--kubelab-name", "gone", "--kubelab-home", str(tmp_path))
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*lab 'gone' does not exist in {tmp_path}; create it with kubelab up*"])


def test_pytest_loads_the_plugin_as_kubelab_from_its_entry_point() -> None:
    found = [e for e in importlib.metadata.entry_points(group="pytest11") if e.name == "kubelab"]
    assert [e.value for e in found] == ["kubelab_testing.plugin"]
