"""A lab's lifecycle, its parts on their own: the lock's refusal, a recorded program's start, identities,
which resources are a lab's own, what `up` refuses, what belongs to no lab."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import pytest

from kubelab_testing.waiting import eventually
from provisioner.lab import identity as labidentity
from provisioner.lab import lock, registry
from provisioner.lab import spec as labspec
from provisioner.lab.identity import Identity
from provisioner.lab.paths import LabPaths
from provisioner.lab.resources import Resource, not_ours, orphans, refused_change, refused_resources
from provisioner.system import processes

OURS = Identity("demo", "a" * 32, "local", 1.0)
OTHER = Identity("demo", "b" * 32, "local", 2.0)


def _hold(
    home: str, lab: str, ready: multiprocessing.synchronize.Event, done: multiprocessing.synchronize.Event
) -> None:
    with lock.held(Path(home), lab, "up"):
        ready.set()
        done.wait(30)


def test_a_second_command_on_a_held_lab_is_refused_at_once_naming_the_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lock, "ROOT", tmp_path / "locks")
    ready, done = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(str(tmp_path), "demo", ready, done))
    holder.start()
    try:
        assert ready.wait(30)
        began = time.monotonic()
        with pytest.raises(lock.LabBusyError) as caught, lock.held(tmp_path, "demo", "down"):
            pass
        assert time.monotonic() - began < 1.0  # at once, no waiting
        message = str(caught.value)
        assert message.startswith(f"lab 'demo' is busy: `kubelab up` (pid {holder.pid}) holds it since ")
        assert "\n" not in message
        with lock.held(tmp_path, "other", "up"):  # another lab is not held
            pass
    finally:
        done.set()
        holder.join(30)
    with lock.held(tmp_path, "demo", "down"):  # released when its holder ended
        pass


def test_a_killed_holder_leaves_no_lock_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock, "ROOT", tmp_path / "locks")
    ready, done = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(str(tmp_path), "demo", ready, done))
    holder.start()
    assert ready.wait(30)
    holder.kill()
    holder.join(30)
    with lock.held(tmp_path, "demo", "up"):
        pass


def test_a_holder_that_wrote_nothing_yet_is_still_a_refusal_in_one_line() -> None:
    assert lock.describe_holder("", "demo") == (
        "lab 'demo' is busy: another kubelab command holds it; try again when it has ended"
    )
    text = json.dumps({"command": "fault crash", "pid": 42, "since": 0})
    assert "`kubelab fault crash` (pid 42)" in lock.describe_holder(text, "demo")


def test_the_refusal_names_the_pid_the_kernel_says_holds_the_lock(tmp_path: Path) -> None:
    held = tmp_path / "demo.lock"
    held.write_text("")
    fd = os.open(held, os.O_RDONLY)
    try:
        stat = os.fstat(fd)
        where = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
        locks = tmp_path / "locks"
        locks.write_text(f"1: FLOCK  ADVISORY  WRITE 99 00:00:1 0 EOF\n2: FLOCK  ADVISORY  WRITE 4242 {where} 0 EOF\n")
        assert lock.holder_of(fd, locks) == 4242
        locks.write_text(f"2: -> FLOCK  ADVISORY  WRITE 777 {where} 0 EOF\n")  # a waiter holds nothing
        assert lock.holder_of(fd, locks) is None
    finally:
        os.close(fd)
    earlier = json.dumps({"command": "up", "pid": 41, "since": 0})  # the note of the holder before
    assert lock.describe_holder(earlier, "demo", holder=4242) == (
        "lab 'demo' is busy: a kubelab command (pid 4242) holds it; try again when it has ended (or stop it: kill 4242)"
    )
    assert "`kubelab up` (pid 41)" in lock.describe_holder(earlier, "demo", holder=41)


def _spawn_and_die_before_the_record_is_saved(run: str, mark: str) -> None:
    def die(_record: processes.ProcessRecord, _run_dir: Path) -> None:
        os._exit(1)  # as a `kubelab up` killed between starting a component and saving its record

    processes.ProcessRecord.save = die  # type: ignore[method-assign,assignment]
    processes.spawn("marker", ["touch", mark], log=Path(run) / "marker.log", record_in=Path(run))


def _running_with(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_recorded_program_starts_after_its_record_and_never_when_its_starter_died_first(tmp_path: Path) -> None:
    record = processes.spawn("sleeper", ["sleep", "30"], log=tmp_path / "sleeper.log", record_in=tmp_path)
    try:
        assert processes.ProcessRecord.load(tmp_path, "sleeper") == record
        eventually(lambda: Path(f"/proc/{record.pid}/cmdline").read_bytes() == b"sleep\x0030\x00", timeout=10)
        assert processes.alive(record)  # the same process, now the program itself
    finally:
        processes.stop(record)
    mark = tmp_path / f"ran-{os.getpid()}"
    starter = multiprocessing.Process(target=_spawn_and_die_before_the_record_is_saved, args=(str(tmp_path), str(mark)))
    starter.start()
    starter.join(30)
    eventually(lambda: not _running_with(str(mark)), timeout=10, what="the gate to end")
    assert not mark.exists()  # the program never ran
    assert processes.ProcessRecord.load(tmp_path, "marker") is None


def test_an_identity_is_written_whole_and_a_damaged_one_reads_as_none(tmp_path: Path) -> None:
    paths = LabPaths(tmp_path / "demo")
    made = labidentity.new("demo", "libvirt", now=5.0)
    labidentity.write(paths, made)
    assert labidentity.read(paths) == made and len(made.uid) == 32
    assert made.environment() == {"KUBELAB_LAB_NAME": "demo", "KUBELAB_LAB_UID": made.uid}
    assert [p.name for p in paths.root.iterdir()] == ["identity.json"]  # no temporary file left
    labidentity.path_of(paths).write_text("{not json")
    assert labidentity.read(paths) is None
    assert labidentity.read(LabPaths(tmp_path / "none")) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"driver": "local"}, "lab 'demo' was made with driver libvirt, not local; a lab keeps its driver"),
        ({"network_cidr": "10.9.0.0/24"}, "was made with network-cidr 192.168.123.0/24, not 10.9.0.0/24"),
        ({"service_cidr": "10.100.0.0/16"}, "was made with service-cidr 10.96.0.0/12, not 10.100.0.0/16"),
        ({"cluster_cidr": "10.1.0.0/16"}, "was made with cluster-cidr 10.244.0.0/16, not 10.1.0.0/16"),
    ],
)
def test_up_refuses_what_a_lab_cannot_change_and_names_the_way_out(change: dict[str, Any], message: str) -> None:
    saved = labspec.LabSpec(name="demo")
    why = refused_change(saved, dataclasses.replace(saved, **change))
    assert why is not None and message in why and why.endswith("remove it first with: kubelab down --name demo")
    assert refused_change(saved, labspec.LabSpec(name="demo", workers=5)) is None  # workers converge
    assert refused_change(None, labspec.LabSpec(name="demo", driver="local")) is None  # a new lab


def _r(kind: str, uid: str, lab: str = "demo") -> Resource:
    return Resource(kind, f"{lab}-{kind}", lab, uid, "libvirt")


def test_a_lab_owns_what_carries_its_identity_or_none_and_a_new_lab_owns_nothing() -> None:
    found = [_r("libvirt domain", OURS.uid), _r("network namespace", ""), _r("libvirt network", OTHER.uid)]
    assert not_ours(found, OURS) == [found[2]]
    assert not_ours(found, None) == found
    line = refused_resources("demo", not_ours(found, None))
    assert line.startswith("lab 'demo' would take over what is not its own: libvirt domain demo-libvirt domain")
    assert "network namespace demo-network namespace (lab demo, no kubelab identity)" in line
    assert line.endswith("remove them first with: kubelab down --name demo (or kubelab down --orphans)")


def test_orphans_are_what_no_lab_owns() -> None:
    found = [
        _r("libvirt domain", OURS.uid),  # the lab's own
        _r("libvirt network", OTHER.uid),  # an earlier lab of the same name
        _r("network namespace", ""),  # by name: the lab's
        _r("process", "c" * 32, lab="gone"),  # its lab has no state
        _r("directory", "", lab="broken"),  # a lab whose identity is damaged keeps what carries its name
    ]
    assert orphans(found, {"demo": OURS, "broken": None}) == [found[1], found[3]]


def test_the_host_registry_knows_labs_of_every_home_and_which_still_exist(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    paths = LabPaths(tmp_path / "home" / "demo")
    labidentity.write(paths, OURS)
    registry.record(OURS, paths, root)
    registry.record(OTHER, LabPaths(tmp_path / "elsewhere" / "demo"), root)
    entries = {e.uid: e for e in registry.entries(root)}
    assert entries[OURS.uid].home == str(tmp_path / "home") and entries[OURS.uid].alive()
    assert not entries[OTHER.uid].alive()  # its state is gone
    registry.forget(OTHER.uid, root)
    assert [e.uid for e in registry.entries(root)] == [OURS.uid]
    os.remove(root / f"{OURS.uid}.json")
    assert registry.entries(root) == []
