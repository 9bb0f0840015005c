"""The lab's cloud (``provisioner.cloud``) backed by this driver's libvirt, and its process.

``instances`` reads the lab's domains (kubelab's stamp in their metadata, as everywhere in this
driver) at every call, with each domain's address from the lab's plan and the libvirt host's name as
its zone. Run as ``python -m provisioner.drivers.libvirt.cloud``, it serves them on the lab network's
host address (see ``provisioner.cloud.server``), and the lab's load balancers (``provisioner.cloud.haproxy``:
addresses from ``--lb-range`` on the lab's bridge, one haproxy), and the lab's routes
(``provisioner.cloud.router``: the gateway routes each node's pod CIDR to it, in a table of the lab's),
and the lab's volumes (``provisioner.cloud.volumes`` on ``volumes.py``: qcow2 files in the lab's volume
pool, made ready when the cloud starts, with ids derived from the lab's identity in ``KUBELAB_LAB_UID``),
until it is stopped (SIGTERM: haproxy ends, the addresses leave the bridge, the routes leave the kernel;
the volume pool and its volumes stay: they outlive the cloud's process, and the lab's ``down`` removes them).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from provisioner.cloud import instances as cloud
from provisioner.cloud import loadbalancers
from provisioner.cloud.haproxy import Balancers
from provisioner.cloud.router import Router
from provisioner.cloud.server import application, tls_context
from provisioner.drivers.libvirt import plan
from provisioner.drivers.libvirt.hypervisor import Hypervisor
from provisioner.drivers.libvirt.volumes import VOLUME_ROOT, LibvirtVolumes, pool_plan
from provisioner.lab.identity import ENV_UID
from provisioner.lab.spec import LabSpec


def facts(domain: Any) -> cloud.DomainFacts:
    state, max_memory_kib, _memory, vcpus, _cpu_time = domain.info()
    return cloud.DomainFacts(domain.name(), domain.UUIDString(), int(state), int(vcpus), int(max_memory_kib))


def read_instances(uri: str, spec: LabSpec) -> list[cloud.Instance]:
    """The lab's instances as libvirt has them now."""
    with Hypervisor.open(uri, spec.name) as hv:
        zone = str(hv.conn.getHostname())
        return [
            cloud.instance(facts(domain), address=plan.address_of(spec, name), zone=zone)
            for name, domain in sorted(hv.domains().items())
        ]


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kubelab-cloud", description="The lab's cloud API, backed by libvirt.")
    parser.add_argument("--lab", required=True, help="the lab whose domains are the instances")
    parser.add_argument("--uri", required=True, help="libvirt's URI")
    parser.add_argument("--network-cidr", required=True, help="the lab network (instances' addresses)")
    parser.add_argument("--address", required=True, help="where to listen: the lab network's host address")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True, type=Path)
    parser.add_argument("--key", required=True, type=Path)
    parser.add_argument("--token-file", required=True, type=Path)
    parser.add_argument("--lb-range", default="", help="FIRST-LAST: the load balancers' addresses ('': none)")
    parser.add_argument("--bridge", default="", help="the lab network's bridge, where those addresses go")
    parser.add_argument("--state-dir", type=Path, help="where the load balancers, haproxy's files and routes are kept")
    parser.add_argument(
        "--volume-dir",
        type=Path,
        help=f"the directory of the lab's volume pool (default {VOLUME_ROOT}/<lab>; volumes need --state-dir)",
    )
    parser.add_argument(
        "--router-namespace",
        action="store_true",
        help="the network namespace is kubelab's own: the router may turn ICMP redirects off for all of it",
    )
    parser.add_argument("--code", default="", help="the digest of this code (what its starter compares)")
    return parser.parse_args(list(argv))


async def serve(args: argparse.Namespace) -> None:
    spec = dataclasses.replace(LabSpec(), name=args.lab, network_cidr=args.network_cidr)

    async def listed() -> list[cloud.Instance]:
        return await asyncio.to_thread(read_instances, args.uri, spec)

    token = args.token_file.read_text().strip()
    volumes = None
    if args.state_dir is not None:  # first: the pool stays anyway, unlike the router's and balancers' changes
        disk_pool = pool_plan(args.lab)
        if args.volume_dir is not None:
            disk_pool = dataclasses.replace(disk_pool, directory=args.volume_dir)
        volumes = LibvirtVolumes(uri=args.uri, lab=args.lab, lab_uid=os.environ.get(ENV_UID, ""), pool=disk_pool)
        await asyncio.to_thread(volumes.start)  # defined, built and started; never removed when the cloud stops
    router = None
    if args.state_dir is not None and args.bridge:
        router = Router(
            bridge=args.bridge,
            network=args.network_cidr,
            state_dir=args.state_dir,
            own_namespace=args.router_namespace,
        )
        router.start()  # first: a kernel that refuses leaves nothing else started
    balancers = None
    if args.state_dir is not None and args.bridge:
        pool = loadbalancers.pool(args.lb_range) if args.lb_range else []
        balancers = Balancers(lab=args.lab, state_dir=args.state_dir, pool=pool, bridge=args.bridge)
    app = application(token=token, instances=listed, balancers=balancers, routes=router, volumes=volumes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.address, args.port, ssl_context=tls_context(str(args.cert), str(args.key)))
    await site.start()
    print(f"kubelab cloud for lab {args.lab} on https://{args.address}:{args.port}", flush=True)
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        await runner.cleanup()
        if balancers is not None:
            balancers.close()  # haproxy ends, the addresses leave the bridge; the load balancers stay recorded
        if router is not None:
            router.close()  # the rule, the table's routes and the isolation go; the routes stay recorded


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(sys.argv[1:] if argv is None else argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
