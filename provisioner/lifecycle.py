"""A lab's lifecycle: ``up``, ``start``, ``stop``, ``down``, ``list`` and orphans, safe against each
other and against what is already on the host.

Each command holds the lab's lock (``lab.lock``) for as long as it runs. ``up`` decides everything
before it writes anything: the saved settings and the new ones must agree on what a lab cannot
change (``lab.resources.refused_change``), nothing on the host may carry the lab's name without
carrying its identity (``lab.resources.not_ours``), and the driver's own checks must pass (ports,
address ranges, host packages, disk space). Only then are the lab's identity and settings written,
each file whole, and the driver brings the lab up: the driver executes, the decisions are made here.
``down`` removes everything that carries the lab's name or identity, also when its state directory is
lost or damaged; ``list`` shows every lab on the host and what belongs to none.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from provisioner import drivers
from provisioner.drivers import resources as host_resources
from provisioner.drivers.base import Driver, LabStatus
from provisioner.errors import ProvisionError, SpecError
from provisioner.lab import allocation, lock, registry
from provisioner.lab import identity as labidentity
from provisioner.lab import spec as labspec
from provisioner.lab.identity import Identity
from provisioner.lab.paths import LabPaths
from provisioner.lab.resources import Resource, not_ours, orphans, refused_change, refused_resources

ALLOCATION = ".allocation"  # the home-wide lock new labs pick their ports and ranges under


@dataclass(frozen=True)
class Lab:
    """A lab as this host knows it: where its state is, its identity and settings (when readable)."""

    name: str
    paths: LabPaths
    identity: Identity | None
    spec: labspec.LabSpec | None

    @classmethod
    def at(cls, paths: LabPaths) -> Lab:
        return cls(paths.root.name, paths, labidentity.read(paths), saved_spec(paths))

    @property
    def exists(self) -> bool:
        return self.spec is not None or self.identity is not None


def saved_spec(paths: LabPaths) -> labspec.LabSpec | None:
    """The lab's saved settings, or None when there are none or they cannot be read."""
    try:
        return labspec.LabSpec.from_json(paths.spec.read_text())
    except (OSError, ValueError, TypeError):
        return None


def driver_for(lab: Lab, spec: labspec.LabSpec, say: Callable[[str], None]) -> Driver:
    return drivers.for_lab(spec, lab.paths, say=say, identity=lab.identity)


def homes_of(home: Path) -> list[Path]:
    """The KUBELAB_HOMEs of every lab on this host (this one first)."""
    found = [home]
    for entry in registry.entries():
        if Path(entry.home) not in found:
            found.append(Path(entry.home))
    return found


# --- up ------------------------------------------------------------------------------------------


def up(paths: LabPaths, wanted: labspec.LabSpec, *, given: Collection[str] = (), say: Callable[[str], None]) -> None:
    """Create the lab or converge it to ``wanted``: every check first, then the state, then the driver.
    A new lab's host ports and address ranges not ``given`` by the user are picked free
    (``lab.allocation``), under the home's allocation lock so two new labs never pick the same."""
    home = paths.root.parent
    with lock.held(home, wanted.name, "up"):
        lab = Lab.at(paths)
        if paths.spec.exists() and lab.spec is None:
            raise SpecError(
                f"lab {wanted.name!r} has settings kubelab cannot read ({paths.spec});"
                f" remove the lab with: kubelab down --name {wanted.name}"
            )
        why = refused_change(lab.spec, wanted)
        if why:
            raise SpecError(why)
        found = host_resources.find(wanted.name, homes_of(home))
        if lab.exists:  # its own identity; a lab made before identities existed gets one now
            identity = lab.identity or labidentity.new(wanted.name, wanted.driver)
            foreign = not_ours(found, identity)
        else:
            identity = labidentity.new(wanted.name, wanted.driver)
            foreign = not_ours(found, None)
        if foreign:
            raise ProvisionError(refused_resources(wanted.name, foreign))
        picking = contextlib.nullcontext() if lab.spec is not None else lock.held(home, ALLOCATION, "up", wait=True)
        with picking:
            if lab.spec is None:
                wanted = allocated(paths, wanted, given, say)
            driver = drivers.for_lab(wanted, paths, say=say, identity=identity)
            driver.check()
            labidentity.write(paths, identity)
            labidentity.write_whole(paths.spec, wanted.to_json())
            registry.record(identity, paths)
        driver.up()


def allocated(
    paths: LabPaths, wanted: labspec.LabSpec, given: Collection[str], say: Callable[[str], None]
) -> labspec.LabSpec:
    """``wanted`` with the ports and ranges not ``given`` moved off those in use and those other labs
    of this home recorded; says which did not get their defaults."""
    probe = drivers.for_lab(wanted, paths, say=say)
    taken = allocation.gather(wanted, paths, networks=probe.ranges_in_use())
    chosen = allocation.allocate(wanted, explicit=given, taken=taken)
    if chosen.picks:
        say(chosen.line(paths.spec))
    return chosen.spec


# --- start, stop ---------------------------------------------------------------------------------


def existing(paths: LabPaths) -> Lab:
    lab = Lab.at(paths)
    if lab.spec is None:
        raise ProvisionError(f"lab {lab.name!r} does not exist; create it with: kubelab up")
    return lab


def start(paths: LabPaths, *, say: Callable[[str], None]) -> None:
    with lock.held(paths.root.parent, paths.root.name, "start"):
        lab = existing(paths)
        assert lab.spec is not None
        driver_for(lab, lab.spec, say).start()


def stop(paths: LabPaths, *, say: Callable[[str], None]) -> list[str]:
    with lock.held(paths.root.parent, paths.root.name, "stop"):
        lab = Lab.at(paths)
        if lab.spec is None:
            return []
        return driver_for(lab, lab.spec, say).stop()


# --- down ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Removed:
    existed: bool  # the lab had a state directory
    stopped: list[str]  # what its driver stopped and removed
    leftovers: list[Resource]  # what was found by name or identity afterwards, and removed


def down(paths: LabPaths, *, say: Callable[[str], None]) -> Removed:
    """Remove the lab: through its driver when its settings can be read, then everything on the host
    that still carries its name or identity (all of it, when its state is lost or damaged)."""
    home = paths.root.parent
    with lock.held(home, paths.root.name, "down"):
        lab = Lab.at(paths)
        existed = paths.root.exists()
        stopped: list[str] = []
        if lab.spec is not None:
            stopped = driver_for(lab, lab.spec, say).down()
        others = {e.uid for e in registry.entries() if e.paths.root != paths.root and e.alive()}
        found = [r for r in host_resources.find(lab.name, homes_of(home)) if r.uid not in others]
        if lab.identity is not None:  # an identity of its own: what carries another is not this lab's
            found = [r for r in found if not r.uid or r.uid == lab.identity.uid]
        for resource in found:
            host_resources.remove(resource)
        shutil.rmtree(paths.root, ignore_errors=True)
        for entry in registry.entries():  # its own, and those of its earlier selves whose state was lost
            if entry.paths.root.resolve() == paths.root.resolve():
                registry.forget(entry.uid)
        return Removed(existed, stopped, found)


# --- list and orphans ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Listed:
    lab: Lab
    home: Path
    status: LabStatus | None  # None: its settings cannot be read


def labs(home: Path) -> list[Lab]:
    """The labs of every home on this host: those in ``home``, then those the host registry names."""
    out: dict[Path, Lab] = {}
    for directory in (
        sorted(p for p in home.iterdir() if p.is_dir() and not p.name.startswith(".")) if home.is_dir() else []
    ):
        lab = Lab.at(LabPaths(directory))
        if lab.exists:
            out[directory] = lab
    for entry in registry.entries():
        if entry.paths.root not in out and entry.alive():
            out[entry.paths.root] = Lab.at(entry.paths)
    return list(out.values())


def listing(home: Path, *, say: Callable[[str], None]) -> tuple[list[Listed], list[Resource]]:
    """Every lab with its status, and the resources that belong to no lab."""
    known = labs(home)
    listed = []
    for lab in known:
        status = driver_for(lab, lab.spec, say).status() if lab.spec is not None else None
        listed.append(Listed(lab, lab.paths.root.parent, status))
    return listed, find_orphans(home, known)


def find_orphans(home: Path, known: list[Lab]) -> list[Resource]:
    found = host_resources.find(None, homes_of(home))
    by_name = {lab.name: lab.identity for lab in known}
    left = orphans(found, by_name)
    vm_labs = any(lab.spec is not None and lab.spec.driver == "libvirt" for lab in known)
    return left + host_resources.unused_daemon(labs_left=vm_labs)


def down_orphans(home: Path) -> list[Resource]:
    """Remove what belongs to no lab (holding the lock of each lab name involved)."""
    removed = []
    for resource in find_orphans(home, labs(home)):
        name = resource.lab or ".host"
        with lock.held(home, name, "down --orphans"):
            host_resources.remove(resource)
        removed.append(resource)
    for entry in registry.entries():
        if not entry.alive():
            registry.forget(entry.uid)
    return removed
