"""The ``kubelab`` command: parse the command line, call the command, print a user's mistake as one
line without a traceback. The commands live beside this module (``lab``, ``faults``, ``images``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from provisioner.cli import addons, dashboard, faults, images, lab, trace, users
from provisioner.errors import ProvisionError
from provisioner.lab import components
from provisioner.lab import spec as labspec
from provisioner.lab import users as users_defaults


def _with_name(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--name", default=None, help="lab name (default: $KUBELAB_LAB or kubelab)")
    return p


def _up_flags(up: argparse.ArgumentParser) -> None:
    up.add_argument("-f", "--file", type=Path, help="lab.yaml with settings (keys as these flags)")
    up.add_argument("--driver", choices=labspec.DRIVERS, help="libvirt: VMs (default); local: processes on this host")
    up.add_argument("--workers", type=int, help="libvirt: worker VMs besides the master (default 2)")
    up.add_argument("--cpus", type=int, help="libvirt: virtual CPUs of each worker (default 1)")
    up.add_argument("--memory", type=int, help="libvirt: MiB of memory of each worker (default 1024)")
    up.add_argument("--master-cpus", type=int, help="libvirt: virtual CPUs of the master (default 2)")
    up.add_argument("--master-memory", type=int, help="libvirt: MiB of memory of the master (default 2048)")
    up.add_argument("--disk", type=int, help="libvirt: GiB of disk of each machine (default 8)")
    up.add_argument("--network-cidr", help="libvirt: the machines' network (default 192.168.123.0/24)")
    up.add_argument(
        "--lb-range", help="libvirt: FIRST-LAST addresses of load balancers (default: the network's upper half)"
    )
    up.add_argument(
        "--pod-routes",
        choices=labspec.POD_ROUTES,
        help="libvirt: who routes pod networks between nodes: cloud (the lab's router, default) or host-gw",
    )
    up.add_argument(
        "--accel", choices=labspec.ACCELERATORS, help="libvirt: kvm, tcg (software), or auto (default: kvm if usable)"
    )
    up.add_argument("--api-port", type=int, help="API server port on 127.0.0.1 (default 6443)")
    up.add_argument("--etcd-port", type=int, help="etcd client port (default 2379)")
    up.add_argument("--etcd-peer-port", type=int, help="etcd peer port (default 2380)")
    up.add_argument("--registry-port", type=int, help="image registry port on 127.0.0.1 (default 5000)")
    up.add_argument("--service-cidr", help="range Service ClusterIPs come from (default 10.96.0.0/12)")
    up.add_argument("--node-port-range", help="range NodePorts come from (default 30000-32767)")
    up.add_argument("--cluster-cidr", help="the pod network; each node gets a /24 of it (default 10.244.0.0/16)")
    up.add_argument(
        "--nodes", type=int, help="real nodes: containerd + kubelet in a network namespace (default 1; 0: none)"
    )
    up.add_argument("--simulated-nodes", type=int, help="register N simulated nodes (default 0)")
    up.add_argument(
        "--node-grace-period", type=int, help="seconds without heartbeat before a node is NotReady (default 40)"
    )
    up.add_argument("--eviction-seconds", type=int, help="how long pods tolerate a NotReady node (default 300)")
    up.add_argument(
        "--apiserver-workers", type=int, help="API server processes sharing its port (default 0: half the CPUs)"
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="kubelab", description="A Kubernetes-architecture lab you can take apart.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _up_flags(_with_name(commands.add_parser("up", help="create or converge a lab and wait until it works")))
    _with_name(commands.add_parser("stop", help="stop the lab's machines or processes, keep its state"))
    _with_name(commands.add_parser("start", help="start a stopped lab again"))
    ssh = _with_name(
        commands.add_parser(
            "ssh",
            help="a shell (or a command) on a node: kubelab ssh NODE [--name LAB] [-- CMD...]",
            description="Everything after NODE that is not --name (or everything after --) is the command.",
        )
    )
    ssh.add_argument("node", metavar="NODE")
    _with_name(commands.add_parser("ssh-config", help="print an ssh config for the lab's nodes"))
    logs = _with_name(commands.add_parser("logs", help="a component's log on a node"))
    logs.add_argument("node", metavar="NODE")
    logs.add_argument(
        "component",
        metavar="COMPONENT",
        choices=sorted(components.LOG_NAMES),
        help=", ".join(sorted(components.NAMES)) + "; or audit: the API server's audit log (on the master)",
    )
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("--tail", type=int, default=200, help="lines to show (default 200; 0: all)")
    traced = commands.add_parser("trace", help="the timeline of every component's steps for one object")
    traced.add_argument("target", metavar="KIND/NAME", help="e.g. deployment/web, pod/web-7d4b9-x2x7q")
    traced.add_argument("-n", "--namespace", default="default", help="the object's namespace (default: default)")
    traced.add_argument(
        "--name", "--lab", dest="name", default=None, help="lab name (default: $KUBELAB_LAB or kubelab)"
    )
    down = _with_name(commands.add_parser("down", help="stop the lab and remove everything it created"))
    down.add_argument("--orphans", action="store_true", help="instead: remove what belongs to no lab (kubelab list)")
    commands.add_parser("list", help="every lab on this host with its driver and health, and orphans")
    _with_name(commands.add_parser("status", help="show what runs and whether it is healthy"))
    _with_name(commands.add_parser("kubeconfig", help="print the path of the lab's kubeconfig"))

    fault = commands.add_parser("fault", help="break the lab on purpose (crash, pause, partition, kill) and heal it")
    fault_commands = fault.add_subparsers(dest="fault_command", required=True, metavar="FAULT")
    for kind, text in (
        ("crash", "power a node off at once, as if its plug were pulled"),
        ("pause", "freeze a node's virtual CPUs"),
        ("partition", "cut a node off the lab network, both ways"),
    ):
        _with_name(fault_commands.add_parser(kind, help=text)).add_argument("node", metavar="NODE")
    kill = _with_name(
        fault_commands.add_parser("kill", help="SIGKILL a component's main process (systemd restarts it)")
    )
    kill.add_argument("node", metavar="NODE")
    kill.add_argument("component", metavar="COMPONENT", choices=components.NAMES, help=", ".join(components.NAMES))
    heal = _with_name(fault_commands.add_parser("heal", help="undo every fault (of one node, if given)"))
    heal.add_argument("node", metavar="NODE", nargs="?", default=None)
    heal.add_argument("--wait", action="store_true", help="then wait until every node is Ready again")
    _with_name(fault_commands.add_parser("list", help="the faults in effect and what holds now"))

    user = commands.add_parser("user", help="people of the lab: a client certificate and kubeconfig each")
    user_commands = user.add_subparsers(dest="user_command", required=True, metavar="USER_COMMAND")
    add = _with_name(
        user_commands.add_parser(
            "add", help="issue NAME a certificate through the CertificateSigningRequest API; write its kubeconfig"
        )
    )
    add.add_argument("user", metavar="NAME", help="the user name (the certificate's CN)")
    add.add_argument(
        "--group", dest="groups", action="append", default=[], metavar="G", help="a group of the user (repeatable)"
    )
    add.add_argument(
        "--expiration-seconds",
        type=int,
        default=users_defaults.DEFAULT_SECONDS,
        help="how long the certificate lasts (default: one year)",
    )
    image = commands.add_parser("image", help="the built-in container images, built offline from Debian packages")
    image_commands = image.add_subparsers(dest="image_command", required=True, metavar="IMAGE_COMMAND")
    build = image_commands.add_parser("build", help="build (or reuse from the cache) the built-in images")
    build.add_argument("names", nargs="*", metavar="NAME", help="which images (default: all)")
    build.add_argument("--force", action="store_true", help="rebuild even when the cache has the image")
    image_commands.add_parser("list", help="the built-in images and their cached archives")
    push = _with_name(
        image_commands.add_parser("push", help="put an image archive (or a built-in image) into the lab registry")
    )
    push.add_argument(
        "source", metavar="FILE.tar|NAME", help="an OCI or docker-save archive, or a built-in image's name"
    )
    push.add_argument("--as", dest="rename", default="", metavar="NAME:TAG", help="the name to store it under")
    push.add_argument("--force", action="store_true", help="copy even when the registry has the same image")
    addon = commands.add_parser("addons", help="the cluster add-ons a lab runs in kube-system (DNS, ...)")
    addon_commands = addon.add_subparsers(dest="addons_command", required=True, metavar="ADDONS_COMMAND")
    _with_name(addon_commands.add_parser("list", help="every add-on, whether it is enabled, and how it runs"))
    for verb, what in (
        ("enable", "apply the add-ons now and on every up"),
        ("disable", "remove them from the cluster"),
    ):
        chosen = _with_name(addon_commands.add_parser(verb, help=what))
        chosen.add_argument("addons", nargs="+", metavar="ADDON", help="add-on names (kubelab addons list)")
    board = commands.add_parser("dashboard", help="open the dashboard add-on: kubectl proxy, its URL, a token")
    board.add_argument("--name", "--lab", dest="name", default=None, help="lab name (default: $KUBELAB_LAB or kubelab)")
    return top


def split_ssh(tokens: Sequence[str]) -> tuple[list[str], list[str]]:
    """``kubelab ssh``'s own arguments and the remote command: ``--name LAB`` may come before or after
    NODE; the first other word after NODE (or everything after ``--``) starts the command."""
    own: list[str] = []
    node_seen = False
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token == "--":
            return own, list(tokens[index + 1 :])
        if token == "--name" and index + 1 < len(tokens):
            own += tokens[index : index + 2]
            index += 2
            continue
        if token.startswith("--name=") or (not node_seen and token.startswith("-")):
            own.append(token)
        elif not node_seen:
            own.append(token)
            node_seen = True
        else:
            return own, list(tokens[index:])
        index += 1
    return own, []


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "up": lab.up,
    "stop": lab.stop,
    "start": lab.start,
    "down": lab.down,
    "list": lab.listing,
    "status": lab.status,
    "kubeconfig": lab.kubeconfig,
    "ssh": lab.ssh,
    "ssh-config": lab.ssh_config,
    "logs": lab.logs,
    "trace": trace.run,
    "fault": faults.run,
    "image": images.run,
    "user": users.run,
    "addons": addons.run,
    "dashboard": dashboard.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    tokens = list(sys.argv[1:] if argv is None else argv)
    remote: list[str] = []
    if tokens[:1] == ["ssh"]:
        own, remote = split_ssh(tokens[1:])
        tokens = ["ssh", *own]
    args = parser().parse_args(tokens)
    if args.command == "ssh":
        args.remote = remote
    try:
        return COMMANDS[args.command](args)
    except ProvisionError as exc:
        print(f"kubelab: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kubelab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
