"""The ``kubelab_service`` action (playbooks/action_plugins) in a real ansible-playbook run: roles name
their services and handlers the ones to restart, and the facts the ``services`` role acts on come out
in order, once each; a bad unit name or readiness URL is one error line naming it.

Runs over Ansible's ``local`` connection; the action touches nothing on the node, only facts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from provisioner.drivers.libvirt.playbooks import PlaybookError, run_playbook
from provisioner.project import PLAYBOOKS

pytestmark = pytest.mark.integration

PLAYBOOK = """\
- name: Services
  hosts: all
  gather_facts: false
  tasks:
    - name: Services | a file whose change restarts b
      ansible.builtin.copy:
        content: "{{ content }}"
        dest: "{{ out }}/b.conf"
        mode: "0644"
      notify: [Restart b, Restart b again]
    - name: Services | run a, ready when it answers
      kubelab_service:
        unit: a.service
        ready: https://127.0.0.1:6443/readyz
        cacert: /etc/ca.crt
        timeout: "{{ 60 + 30 }}"
    - name: Services | run b
      kubelab_service:
        unit: b.service
    - name: Services | run c, ready when it answers to a client certificate
      kubelab_service:
        unit: c.service
        ready: https://127.0.0.1:2379/health
        cacert: /etc/etcd-ca.crt
        cert: /etc/client.crt
        key: /etc/client.key
    - name: Services | run a again, with another check
      kubelab_service:
        unit: a.service
        ready: http://127.0.0.1:1/
    - name: Services | collect the restarts
      ansible.builtin.meta: flush_handlers
    - name: Services | record what the services role would get
      ansible.builtin.copy:
        content: "{{ {'services': kubelab_services, 'restart': kubelab_restart} | to_json }}"
        dest: "{{ out }}/facts.json"
        mode: "0644"
  handlers:
    - name: Restart b
      kubelab_service:
        unit: b.service
        restart: true
    - name: Restart b again
      kubelab_service:
        unit: b.service
        restart: true
"""


def _run(tmp_path: Path, playbook: str, content: str = "one\n") -> dict[str, object]:
    (tmp_path / "action_plugins").symlink_to(PLAYBOOKS / "action_plugins")
    (tmp_path / "play.yml").write_text(playbook)
    (tmp_path / "out").mkdir()
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "all:\n  vars:\n    kubelab_services: []\n    kubelab_restart: []\n  hosts:\n    node1:\n"
        f"      ansible_connection: local\n      ansible_python_interpreter: {sys.executable}\n"
        f"      out: {tmp_path / 'out'}\n      content: {json.dumps(content)}\n"
    )
    run_playbook(inventory, state_dir=tmp_path / "state", say=lambda _line: None, playbook=tmp_path / "play.yml")
    loaded: dict[str, object] = json.loads((tmp_path / "out" / "facts.json").read_text())
    return loaded


def test_roles_name_services_in_order_and_handlers_the_ones_to_restart_once(tmp_path: Path) -> None:
    facts = _run(tmp_path, PLAYBOOK)
    assert facts == {
        "services": [
            {"unit": "b.service", "ready": "", "cacert": "", "cert": "", "key": "", "timeout": 300},
            {
                "unit": "c.service",
                "ready": "https://127.0.0.1:2379/health",
                "cacert": "/etc/etcd-ca.crt",
                "cert": "/etc/client.crt",
                "key": "/etc/client.key",
                "timeout": 300,
            },
            {"unit": "a.service", "ready": "http://127.0.0.1:1/", "cacert": "", "cert": "", "key": "", "timeout": 300},
        ],
        "restart": ["b.service"],
    }


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("unit: 'etcd; reboot'", "kubelab_service: unit 'etcd; reboot' is not a systemd unit name"),
        ("unit: etcd.service\n        ready: curl -sf http://x/", "kubelab_service: ready 'curl -sf http://x/' is not"),
        ("unit: etcd.service\n        timeout: soon", "kubelab_service: timeout 'soon' is not seconds"),
        ("unit: etcd.service\n        cert: /etc/c.crt", "kubelab_service: cert and key go together"),
    ],
)
def test_a_bad_service_is_one_error_line_naming_it(tmp_path: Path, arguments: str, message: str) -> None:
    playbook = (
        "- name: Bad\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        f"    - name: Bad | name a service\n      kubelab_service:\n        {arguments}\n"
    )
    with pytest.raises(PlaybookError) as caught:
        _run(tmp_path, playbook)
    assert caught.value.task == "Bad | name a service"
    assert message in caught.value.detail
