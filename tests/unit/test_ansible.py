"""The ansible-runner driver's pure parts: the inventory it writes, and what a user sees of a run.

The events are shaped as ansible-runner hands them to its event handler (recorded from real runs
of ansible-core 2.19: the keys used here are the ones it fills in).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.drivers.libvirt.inventory import (
    CONNECTION_DEFAULTS,
    REQUIRED_VARIABLES,
    InventoryError,
    InventoryNode,
    hosts_of,
    inventory,
)
from provisioner.drivers.libvirt.playbooks import (
    TaskFailure,
    _Progress,
    failure_of,
    module_message,
    progress_line,
    run_error,
    runner_environment,
    stats_line,
)
from provisioner.errors import ProvisionError
from provisioner.lab.render import HEADER
from tests.support.inventory import lab_variables

MASTER = InventoryNode("kubelab-master", "192.168.150.10", "master")
WORKER = InventoryNode("kubelab-worker1", "192.168.150.11", "worker")
VARIABLES: dict[str, object] = lab_variables(Path("/lab"))


def _event(kind: str, **data: Any) -> dict[str, Any]:
    return {"event": kind, "event_data": {"play": "Etcd", **data}}


# --- inventory -----------------------------------------------------------------------------------


def test_the_inventory_has_the_groups_hosts_and_lab_variables_the_roles_read() -> None:
    text = inventory([MASTER, WORKER], VARIABLES)
    assert text.splitlines()[0] == f"# {HEADER}"
    top = yaml.safe_load(text)["all"]
    assert top["children"]["masters"]["hosts"] == {
        "kubelab-master": {"ansible_host": "192.168.150.10", "kubelab_node_ip": "192.168.150.10"}
    }
    assert top["children"]["workers"]["hosts"] == {
        "kubelab-worker1": {"ansible_host": "192.168.150.11", "kubelab_node_ip": "192.168.150.11"}
    }
    assert top["vars"]["ansible_user"] == "root"
    assert top["vars"]["ansible_python_interpreter"] == "/usr/bin/python3"
    assert top["vars"]["kubelab_master_ip"] == "192.168.150.10"
    assert top["vars"]["kubelab_state_dir"] == "/lab"  # paths become strings
    assert top["vars"]["kubelab_api_port"] == 6443
    assert set(REQUIRED_VARIABLES) | set(CONNECTION_DEFAULTS) <= set(top["vars"])
    assert hosts_of(text) == ["kubelab-master", "kubelab-worker1"]


def test_ansible_reads_the_inventory_as_written(tmp_path: Path) -> None:
    from ansible.inventory.manager import InventoryManager  # noqa: PLC0415
    from ansible.parsing.dataloader import DataLoader  # noqa: PLC0415

    path = tmp_path / "inventory.yml"
    path.write_text(inventory([MASTER], VARIABLES))  # no worker: the group is still there, empty
    parsed = InventoryManager(loader=DataLoader(), sources=[str(path)])
    assert [h.name for h in parsed.get_hosts("masters")] == ["kubelab-master"]
    assert parsed.get_hosts("workers") == []
    assert "workers" in parsed.groups
    master = parsed.get_host("kubelab-master")
    assert master.vars["kubelab_node_ip"] == "192.168.150.10"
    assert parsed.groups["all"].vars["kubelab_registry_port"] == 5000


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ([WORKER], "exactly one master node, not 0"),
        ([MASTER, InventoryNode("m2", "192.168.150.12", "master")], "exactly one master node, not 2"),
        ([MASTER, InventoryNode("w", "192.168.150.12", "boss")], "role 'boss' is neither"),
        ([MASTER, InventoryNode("Worker_1", "192.168.150.12", "worker")], "use lowercase letters"),
        ([MASTER, InventoryNode("w", "192.168.150.999", "worker")], "not an IPv4 address"),
        ([MASTER, InventoryNode("kubelab-master", "192.168.150.12", "worker")], "kubelab-master given more than once"),
    ],
)
def test_nodes_that_make_no_lab_are_one_clear_error(nodes: list[InventoryNode], message: str) -> None:
    with pytest.raises(InventoryError, match=message) as caught:
        inventory(nodes, VARIABLES)
    assert isinstance(caught.value, ProvisionError)


def test_missing_variables_are_named() -> None:
    partial = {k: v for k, v in VARIABLES.items() if k not in ("kubelab_code_dir", "kubelab_api_port")}
    with pytest.raises(InventoryError, match="inventory variables missing: kubelab_code_dir, kubelab_api_port"):
        inventory([MASTER], partial)


def test_a_master_ip_other_than_the_master_s_address_is_refused() -> None:
    with pytest.raises(InventoryError, match=r"is not the master's address 192\.168\.150\.10"):
        inventory([MASTER], {**VARIABLES, "kubelab_master_ip": "10.0.0.1"})


# --- events -> what the user sees ----------------------------------------------------------------


def test_plays_tasks_and_handlers_are_one_line_each_with_the_seconds_elapsed() -> None:
    assert progress_line(_event("playbook_on_play_start"), 1.25) == "[   1.2s] play: Etcd"
    task = _event("playbook_on_task_start", task="Etcd | render the configuration")
    assert progress_line(task, 12.0) == "[  12.0s]   Etcd | render the configuration"
    handler = _event("playbook_on_handler_task_start", task="Etcd | restart")
    assert progress_line(handler, 13.0) == "[  13.0s]   handler: Etcd | restart"
    for quiet in ("runner_on_start", "runner_on_ok", "runner_retry", "playbook_on_stats", "verbose"):
        assert progress_line(_event(quiet, host="kubelab-master", res={}), 1.0) is None


def test_a_failed_task_is_its_host_the_task_and_the_module_s_message() -> None:
    event = _event(
        "runner_on_failed",
        host="kubelab-master",
        task="Etcd | wait until healthy",
        res={"msg": "Status code was -1 and not [200]: Request failed: <urlopen error [Errno 111] refused>"},
    )
    failure = failure_of(event)
    assert failure == TaskFailure(
        "kubelab-master",
        "Etcd | wait until healthy",
        "Status code was -1 and not [200]: Request failed: <urlopen error [Errno 111] refused>",
    )
    assert progress_line(event, 3.0) == f"[   3.0s]   {failure.line()}"
    assert failure.line().startswith("kubelab-master: 'Etcd | wait until healthy' failed: Status code")


def test_an_ignored_failure_is_no_failure() -> None:
    event = _event("runner_on_failed", host="h", task="t", ignore_errors=True, res={"msg": "x"})
    assert failure_of(event) is None and progress_line(event, 1.0) is None


def test_an_unreachable_host_is_a_failure_saying_so() -> None:
    event = _event(
        "runner_on_unreachable",
        host="kubelab-worker1",
        task="Common | set the hostname",
        res={"unreachable": True, "msg": "Task failed: Failed to connect to the host via ssh: Connection refused"},
    )
    failure = failure_of(event)
    assert failure is not None and failure.unreachable
    assert failure.line() == (
        "kubelab-worker1: 'Common | set the hostname' unreachable:"
        " Failed to connect to the host via ssh: Connection refused"
    )


def test_a_command_s_message_carries_the_last_line_of_its_output() -> None:
    result = {"msg": "non-zero return code", "rc": 1, "stderr": "Processing x.whl\nERROR: x.whl is not a valid wheel"}
    assert module_message(result) == "exit code 1: ERROR: x.whl is not a valid wheel"
    assert module_message({"msg": "", "rc": 2, "stdout": "only stdout", "stderr": ""}) == "exit code 2: only stdout"
    assert module_message({}) == "failed without a message"


def test_a_loop_s_message_is_the_first_failed_item() -> None:
    result = {
        "msg": "One or more items failed",
        "results": [
            {"failed": False, "item": "ok"},
            {"failed": True, "_ansible_item_label": "apiserver.key", "msg": "Could not find or access 'apiserver.key'"},
        ],
    }
    assert module_message(result) == "item apiserver.key: Could not find or access 'apiserver.key'"


def test_messages_are_one_line_and_bounded() -> None:
    assert module_message({"msg": "first\n  second\tthird"}) == "first second third"
    long = module_message({"msg": "x" * 1000})
    assert len(long) == 400 and long.endswith("...")


def test_the_progress_keeps_each_host_s_last_failure() -> None:
    lines: list[str] = []
    progress = _Progress(lines.append)
    progress.event(_event("playbook_on_task_start", task="Common | install the kubelab wheel into the venv"))
    progress.event(_event("runner_on_failed", host="m", task="Common | install", res={"msg": "pip broke"}))
    progress.event(_event("runner_on_failed", host="m", task="Common | report", res={"msg": "pip could not"}))
    assert [f.task for f in progress.failures.values()] == ["Common | report"]
    assert len(lines) == 3


def test_the_run_s_error_is_the_first_host_that_failed_for_good() -> None:
    failures = {
        "w1": TaskFailure("w1", "Node | wait until ready", "timed out"),
        "m": TaskFailure("m", "Common | x", "rescued, then fine"),
        "w2": TaskFailure("w2", "Node | wait until ready", "timed out"),
    }
    stats = {"failures": {"w1": 1, "w2": 1}, "rescued": {"m": 1}, "dark": {}}
    error = run_error(failures, stats=stats, output=Path("/lab/ansible/artifacts/1/stdout"))
    assert (error.host, error.task, error.detail) == ("w1", "Node | wait until ready", "timed out")
    assert str(error) == (
        "ansible: w1: 'Node | wait until ready' failed: timed out (1 more hosts failed);"
        " the whole output is in /lab/ansible/artifacts/1/stdout"
    )
    assert "\n" not in str(error)


def test_a_run_that_failed_without_a_task_says_where_the_output_is() -> None:
    error = run_error({}, stats={}, output=Path("/o/stdout"))
    assert str(error) == "ansible-playbook failed before any task ran; see /o/stdout"


def test_the_summary_counts_changes_per_host() -> None:
    stats = {"processed": {"w": 1, "m": 1}, "changed": {"m": 3}}
    assert stats_line(stats, 60.0) == "[  60.0s] 2 hosts; tasks that changed something: m 3, w 0"


def test_ansible_runs_with_pipelining_and_persistent_ssh_connections() -> None:
    env = runner_environment(bin_dir=Path("/venv/bin"))
    assert env["ANSIBLE_PIPELINING"] == "True"
    assert "ControlPersist=" in env["ANSIBLE_SSH_ARGS"] and "ControlMaster=auto" in env["ANSIBLE_SSH_ARGS"]
    assert env["PATH"].startswith("/venv/bin:")
