"""Cutting machines off the lab network: one nftables table of the bridge family, where the lab's
bridge lives (inside kubelab's namespace in self-contained mode), dropping every frame from and to the
cut-off machines' MAC addresses. The table is rendered whole (pure) and loaded in one ``nft -f``
transaction; with no machine cut off it is removed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from provisioner.drivers.base import Machine
from provisioner.errors import ComponentError
from provisioner.lab import render


def table_name(lab: str) -> str:
    return f"kubelab-faults-{lab}"


def ruleset(lab: str, machines: Sequence[Machine], cut: Collection[str], *, uid: str = "") -> str:
    """The whole table for ``lab`` with the machines named in ``cut`` dropped, in the lab's order
    (its comment carries the lab's identity)."""
    pairs = [(m.name, m.mac) for m in machines if m.name in cut]
    return render.render("nftables/faults.nft.j2", lab=lab, uid=uid, table=table_name(lab), cut=pairs)


def apply(text: str, file: Path, wrap: Callable[[list[str]], list[str]]) -> None:
    """Write ``text`` to ``file`` and load it with ``nft -f``, run through ``wrap`` (where the bridge is)."""
    render.write(file, text)
    done = subprocess.run(wrap(["nft", "-f", str(file)]), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ComponentError(f"nft could not load {file}: {done.stderr.strip()}")
