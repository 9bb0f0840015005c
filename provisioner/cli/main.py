"""The ``kubelab`` command: parse, set up output, call the driver. Mistakes print one line, no traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from provisioner.artefacts import containerimages, registry
from provisioner.drivers.libvirt.driver import UNITS, LibvirtDriver
from provisioner.drivers.local.driver import LocalDriver
from provisioner.errors import ProvisionError, SpecError
from provisioner.faults import plan as faults
from provisioner.faults.executor import FaultOps
from provisioner.lab import spec as labspec
from provisioner.lab.paths import LabPaths


def _say(message: str) -> None:
    print(message, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubelab", description="A Kubernetes-architecture lab you can take apart.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_name(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--name", default=None, help="lab name (default: kubelab)")
        return p

    up = with_name(commands.add_parser("up", help="create or converge a lab and wait until it works"))
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
    with_name(commands.add_parser("stop", help="stop the lab's machines or processes, keep its state"))
    with_name(commands.add_parser("start", help="start a stopped lab again"))
    ssh = with_name(commands.add_parser("ssh", help="a shell (or a command) on a node: kubelab ssh NODE [-- CMD]"))
    ssh.add_argument("node", metavar="NODE")
    ssh.add_argument("remote", nargs=argparse.REMAINDER, metavar="CMD", help="a command to run instead of a shell")
    with_name(commands.add_parser("ssh-config", help="print an ssh config for the lab's nodes"))
    logs = with_name(commands.add_parser("logs", help="a component's log on a node (its journal)"))
    logs.add_argument("node", metavar="NODE")
    logs.add_argument("component", metavar="COMPONENT", choices=sorted(UNITS), help=", ".join(sorted(UNITS)))
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("--tail", type=int, default=200, help="lines to show (default 200; 0: all)")
    with_name(commands.add_parser("down", help="stop the lab and remove everything it created"))
    with_name(commands.add_parser("status", help="show what runs and whether it is healthy"))
    with_name(commands.add_parser("kubeconfig", help="print the path of the lab's kubeconfig"))
    fault = commands.add_parser("fault", help="break the lab on purpose (crash, pause, partition, kill) and heal it")
    fault_commands = fault.add_subparsers(dest="fault_command", required=True, metavar="FAULT")
    for kind, text in (
        ("crash", "power a node off at once, as if its plug were pulled"),
        ("pause", "freeze a node's virtual CPUs"),
        ("partition", "cut a node off the lab network, both ways"),
    ):
        with_name(fault_commands.add_parser(kind, help=text)).add_argument("node", metavar="NODE")
    kill = with_name(fault_commands.add_parser("kill", help="SIGKILL a component's main process (systemd restarts it)"))
    kill.add_argument("node", metavar="NODE")
    kill.add_argument(
        "component", metavar="COMPONENT", choices=list(faults.COMPONENTS), help=", ".join(faults.COMPONENTS)
    )
    heal = with_name(fault_commands.add_parser("heal", help="undo every fault (of one node, if given)"))
    heal.add_argument("node", metavar="NODE", nargs="?", default=None)
    heal.add_argument("--wait", action="store_true", help="then wait until every node is Ready again")
    with_name(fault_commands.add_parser("list", help="the faults in effect and what holds now"))
    image = commands.add_parser("image", help="the built-in container images, built offline from Debian packages")
    image_commands = image.add_subparsers(dest="image_command", required=True, metavar="IMAGE_COMMAND")
    build = image_commands.add_parser("build", help="build (or reuse from the cache) the built-in images")
    build.add_argument("names", nargs="*", metavar="NAME", help="which images (default: all)")
    build.add_argument("--force", action="store_true", help="rebuild even when the cache has the image")
    image_commands.add_parser("list", help="the built-in images and their cached archives")
    push = with_name(
        image_commands.add_parser("push", help="put an image archive (or a built-in image) into the lab registry")
    )
    push.add_argument(
        "source", metavar="FILE.tar|NAME", help="an OCI or docker-save archive, or a built-in image's name"
    )
    push.add_argument("--as", dest="rename", default="", metavar="NAME:TAG", help="the name to store it under")
    push.add_argument("--force", action="store_true", help="copy even when the registry has the same image")
    return parser


def _driver(name: str | None, *, spec: labspec.LabSpec | None = None) -> LocalDriver | LibvirtDriver:
    paths = LabPaths.for_lab(name or "kubelab")
    if spec is None:
        if paths.spec.exists():
            spec = labspec.LabSpec.from_json(paths.spec.read_text())
        else:
            spec = labspec.LabSpec(name=name or "kubelab")
    if spec.driver == "local":
        return LocalDriver(spec, paths, say=_say)
    return LibvirtDriver(spec, paths, say=_say)


def _vms(name: str | None) -> LibvirtDriver:
    driver = _driver(name)
    if not isinstance(driver, LibvirtDriver):
        raise SpecError(f"lab {driver.spec.name!r} uses the local driver: it has no machines to reach")
    if not driver.paths.spec.exists():
        raise ProvisionError(f"lab {driver.spec.name!r} does not exist; create it with: kubelab up")
    return driver


def _up(args: argparse.Namespace) -> int:
    overrides = {field: getattr(args, field, None) for field in labspec.LabSpec.fields()}
    saved = LabPaths.for_lab(args.name or "kubelab").spec
    base = labspec.LabSpec.from_json(saved.read_text()) if saved.exists() else None
    spec = labspec.build(args.file, overrides, base=base)
    _driver(spec.name, spec=spec).up()
    return 0


def _vm_status(driver: LibvirtDriver) -> int:
    spec = driver.spec
    _say(f"lab {spec.name!r} (driver libvirt, 1 master + {spec.workers} workers, state {driver.paths.root})")
    machines = driver.machine_status()
    readiness = driver.node_readiness() if any(m.state == "running" for m in machines) else {}
    _say(f"{'NODE':<24} {'ROLE':<7} {'IP':<16} {'VM':<9} {'ACCEL':<6} {'NODE STATUS':<12} COMPONENTS")
    healthy = True
    for machine in machines:
        units = (
            driver.unit_health(next(m for m in driver.machines if m.name == machine.name))
            if (machine.state == "running")
            else {}
        )
        parts = [f"{unit.removeprefix('kubelab-')}={state}" for unit, state in units.items()]
        node = readiness.get(machine.name, "-")
        healthy = healthy and machine.state == "running" and node == "Ready"
        healthy = healthy and bool(units) and all(s == "active" for s in units.values())
        _say(
            f"{machine.name:<24} {machine.role:<7} {machine.ip:<16} {machine.state:<9} {machine.accel:<6}"
            f" {node:<12} {' '.join(parts) or '-'}"
        )
    _say(f"kubeconfig: {driver.paths.kubeconfig}")
    _say(f"ssh config: {driver.ssh_config}")
    return 0 if healthy else 1


def _status(args: argparse.Namespace) -> int:
    driver = _driver(args.name)
    if not driver.paths.root.exists():
        _say(f"lab {driver.spec.name!r} does not exist; create it with: kubelab up")
        return 1
    if isinstance(driver, LibvirtDriver):
        return _vm_status(driver)
    rows = driver.status()
    _say(f"lab {driver.spec.name!r} (driver {driver.spec.driver}, state {driver.paths.root})")
    _say(f"{'COMPONENT':<19} {'PID':<8} {'STATE':<9} {'HEALTH':<9} ENDPOINT")
    for row in rows:
        health = "healthy" if row.healthy else ("-" if row.state == "stopped" else "unhealthy")
        _say(f"{row.name:<19} {row.pid or '-':<8} {row.state:<9} {health:<9} {row.endpoint}")
    for row in rows:
        if row.state == "exited" or (row.state == "running" and not row.healthy):
            _say(f"  {row.name}: see {row.log}")
    if driver.paths.kubeconfig.exists():
        _say(f"kubeconfig: {driver.paths.kubeconfig}")
    return 0 if all(r.healthy for r in rows) else 1


def _kubeconfig(args: argparse.Namespace) -> int:
    paths = LabPaths.for_lab(args.name or "kubelab")
    if not paths.kubeconfig.exists():
        raise ProvisionError(f"lab {args.name or 'kubelab'!r} has no kubeconfig yet; create the lab with: kubelab up")
    print(paths.kubeconfig)
    return 0


def _stop(args: argparse.Namespace) -> int:
    stopped = _driver(args.name).stop()
    _say(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _start(args: argparse.Namespace) -> int:
    driver = _driver(args.name)
    if not driver.paths.spec.exists():
        raise ProvisionError(f"lab {driver.spec.name!r} does not exist; create it with: kubelab up")
    if isinstance(driver, LibvirtDriver):
        driver.start()
    else:
        driver.up()
    return 0


def _ssh(args: argparse.Namespace) -> int:
    driver = _vms(args.name)
    remote = [a for a in args.remote if a != "--"] if args.remote[:1] == ["--"] else list(args.remote)
    argv = driver.ssh_argv(args.node, remote, tty=not remote and sys.stdin.isatty())
    sys.stdout.flush()
    os.execvp(argv[0], argv)
    return 0  # not reached


def _ssh_config(args: argparse.Namespace) -> int:
    driver = _vms(args.name)
    if not driver.ssh_config.exists():
        raise ProvisionError(f"lab {driver.spec.name!r} has no machines yet; create it with: kubelab up")
    print(driver.ssh_config.read_text(), end="")
    return 0


def _logs(args: argparse.Namespace) -> int:
    driver = _vms(args.name)
    command = ["journalctl", "--no-pager", "-o", "short-iso", "-u", UNITS[args.component]]
    if args.tail:
        command += ["-n", str(args.tail)]
    if args.follow:
        command.append("-f")
    argv = driver.ssh_argv(args.node, command)
    return subprocess.run(argv, check=False).returncode


def _down(args: argparse.Namespace) -> int:
    driver = _driver(args.name)
    existed = driver.paths.root.exists()
    stopped = driver.down()
    if stopped:
        _say(f"stopped: {', '.join(stopped)}")
    _say(
        f"removed lab {driver.spec.name!r} ({driver.paths.root})"
        if existed
        else f"lab {driver.spec.name!r} does not exist; nothing to do"
    )
    return 0


def _fault(args: argparse.Namespace) -> int:
    ops = FaultOps(_vms(args.name), say=_say)
    if args.fault_command == "list":
        rows = ops.rows()
        if not rows:
            _say(f"no faults in lab {ops.lab!r}")
            return 0
        _say(f"{'FAULT':<10} {'NODE':<22} {'COMPONENT':<19} {'SINCE':<9} NOW")
        for row in rows:
            since = time.strftime("%H:%M:%S", time.localtime(row.fault.since))
            _say(f"{row.fault.kind:<10} {row.fault.node:<22} {row.fault.component or '-':<19} {since:<9} {row.state}")
        return 0
    if args.fault_command == "heal":
        ops.heal(args.node)
        if args.wait:
            ops.driver.wait_ready()
        return 0
    ops.inject(args.fault_command, args.node, getattr(args, "component", ""))
    return 0


def _image(args: argparse.Namespace) -> int:
    if args.image_command == "list":
        known = containerimages.recipes()
        _say(f"{'IMAGE':<10} {'ARCHIVE'}")
        for name in sorted(known):
            cached = sorted(containerimages.CACHE.glob(f"{name}-*.tar"))
            _say(f"{name:<10} {cached[-1] if cached else '(not built yet: kubelab image build ' + name + ')'}")
        return 0
    if args.image_command == "push":
        driver = _driver(args.name)
        if not driver.paths.root.exists():
            raise ProvisionError(f"lab {driver.spec.name!r} does not exist; create it with: kubelab up")
        source = Path(args.source)
        if not source.exists() and args.source in containerimages.recipes():
            source = containerimages.build_all([args.source], say=_say)[0].archive
        images = registry.images_in(source, rename=args.rename)
        copied = registry.push(images, registry=driver.registry, say=lambda _msg: None, force=args.force)
        for image in images:
            state = "pushed" if f"{image.repository}:{image.tag}" in copied else "already there"
            _say(f"{image.repository}:{image.tag}: {state} ({driver.registry})")
        return 0
    for built in containerimages.build_all(args.names, say=_say, force=args.force):
        origin = "cached" if built.cached else "built"
        _say(f"{built.name}:{built.tag} ({origin}, {built.size / 1e6:.1f} MB, {built.digest[:19]}) {built.archive}")
    return 0


COMMANDS = {
    "fault": _fault,
    "image": _image,
    "up": _up,
    "stop": _stop,
    "start": _start,
    "down": _down,
    "status": _status,
    "kubeconfig": _kubeconfig,
    "ssh": _ssh,
    "ssh-config": _ssh_config,
    "logs": _logs,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
