"""The e2e tier: one VM lab (1 master, 2 workers) for the whole session, made with `kubelab up` in a
KUBELAB_HOME of its own and removed with `kubelab down`; the scenarios run in file order against it
through the kubelab pytest plugin's fixtures (kubelab_lab, kubelab_kubectl, ...). `--kubelab-name NAME`
runs them against a lab that is up instead."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

from kubelab_testing.lab import Lab, up_flags
from kubelab_testing.plugin import NewLab


@pytest.fixture(scope="session")
def kubelab_new_lab() -> NewLab:
    return NewLab("e2e", up_flags("libvirt", "--workers", "2"))


DIAGNOSED: list[str] = []  # the failures whose master was looked at (a few per session: each costs an ssh)
MASTER_FACTS = (
    "uptime; free -m; systemctl --no-pager list-units 'kubelab-*' etcd.service containerd.service | head -12; "
    "ss -ltn '( sport = :6443 or sport = :2379 )'; "
    "journalctl --no-pager -o short-precise -n 40 -u kubelab-apiserver -u etcd -u kubelab-cloud-controller-manager"
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """After a failure, what the master was doing (its load, memory, units and the API server's and
    etcd's last log lines), in the report and in $KUBELAB_DIAGNOSTICS when the ladder sets it (it
    prints that file's end after a failed tier, where CI's summary shows it)."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    lab = getattr(item, "funcargs", {}).get("kubelab_lab")
    if not report.failed or not isinstance(lab, Lab) or len(DIAGNOSED) >= 3 or not (lab.root / "lab.json").exists():
        return  # (a lab already removed, by the last scenario, has no master to ask)
    DIAGNOSED.append(item.nodeid)
    try:
        text = _master_facts(lab, f"{item.nodeid} ({report.when})")
    except Exception as exc:  # looking must never turn a failed scenario into a broken session
        text = f"=== {item.nodeid}: could not look at the master: {exc!r}"
    report.sections.append(("kubelab master", text))
    target = os.environ.get("KUBELAB_DIAGNOSTICS")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(text + "\n")


def _master_facts(lab: Lab, title: str) -> str:
    looked = lab.ssh(lab.master.name, MASTER_FACTS, timeout=60)
    forwarder = lab.root / "logs" / "forward.log"
    tail = forwarder.read_text(errors="replace").splitlines()[-5:] if forwarder.exists() else []
    return "\n".join([f"=== {title} on {lab.master.name}", looked.out, looked.err, "forwarder:", *tail])
