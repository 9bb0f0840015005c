"""Two local labs side by side in one KUBELAB_HOME, made with no port flags: the second gets free ports
for every default the first holds, says which, records them, keeps them, and both work and go down."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from kubelab_testing.lab import Lab
from provisioner.system import packages
from provisioner.system import processes as procs
from tests.integration.conftest import CLI_TIMEOUT
from tests.support.components import require, require_kubectl

DEFAULTS = {"api_port": 6443, "etcd_port": 2379, "etcd_peer_port": 2380, "registry_port": 5000}
CONTROL_PLANE = ("etcd", "registry", "apiserver", "trace-collector", "controller-manager", "scheduler")


def host_ports(lab: Lab) -> dict[str, int]:
    return {key: int(lab.spec[key]) for key in DEFAULTS}


def said_picks(lab: Lab, out: str) -> None:
    """``up`` named every port that did not get its default, with the value it got instead."""
    for key, port in host_ports(lab).items():
        if port != DEFAULTS[key]:
            assert f"{key.replace('_', '-')} {port} ({DEFAULTS[key]} is " in out, out


def test_two_local_labs_run_side_by_side_in_one_home_without_port_flags(tmp_path: Path) -> None:
    require(packages.ETCD, packages.REGISTRY, packages.SKOPEO)
    require(packages.CONTAINERD, packages.RUNC, packages.CNI_BRIDGE, packages.NFT)
    kubectl = require_kubectl()
    first, second = (Lab(name, tmp_path, timeout=CLI_TIMEOUT) for name in ("first", "second"))
    try:
        made = first.cli("up", "--name", "first", "--driver", "local")  # a node of its own, as by default
        assert made.ok, made.err
        made_beside = second.cli("up", "--name", "second", "--driver", "local", "--nodes", "0")
        assert made_beside.ok, made_beside.err

        said_picks(first, made.out)
        said_picks(second, made_beside.out)
        ours, theirs = host_ports(first), host_ports(second)
        assert not set(ours.values()) & set(theirs.values())
        # the first lab holds each default, or something else on this host did: the second has none
        assert not set(theirs.values()) & set(DEFAULTS.values())
        assert f"recorded in {second.root / 'lab.json'}" in made_beside.out

        for lab in (first, second):
            answer = subprocess.run(
                [kubectl, "--kubeconfig", str(lab.kubeconfig), "get", "namespaces", "-o", "name"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert answer.returncode == 0 and "namespace/default" in answer.stdout, answer.stderr

        both = {**os.environ, "KUBECONFIG": f"{first.kubeconfig}:{second.kubeconfig}"}
        contexts = subprocess.run(
            [kubectl, "config", "get-contexts", "-o", "name"], capture_output=True, text=True, env=both, check=True
        )
        assert contexts.stdout.split() == ["first", "second"]
        through_context = subprocess.run(
            [kubectl, "--context", "second", "get", "namespace", "kube-system", "-o", "name"],
            capture_output=True,
            text=True,
            env=both,
            timeout=60,
            check=False,
        )
        assert through_context.stdout.strip() == "namespace/kube-system", through_context.stderr

        recorded = (second.root / "lab.json").read_text()
        again = second.cli("up", "--name", "second")  # a later up keeps what was picked
        assert again.ok, again.err
        assert "picked" not in again.out and (second.root / "lab.json").read_text() == recorded
        assert again.out.count("already running") == len(CONTROL_PLANE)

        records = [
            procs.ProcessRecord.load(lab.root / "run", name) for lab in (first, second) for name in CONTROL_PLANE
        ]
        assert all(r is not None and procs.alive(r) for r in records)
        for lab in (second, first):
            down = lab.cli("down", "--name", lab.name)
            assert down.ok and f"removed lab {lab.name!r}" in down.out, down.err
            assert not lab.root.exists()
        assert not any(procs.alive(r) for r in records if r is not None)
    finally:
        for lab in (first, second):
            if lab.root.exists():  # a failed step above: leave nothing running
                lab.cli("down", "--name", lab.name)
