"""Where a lab keeps its files on the host."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_home() -> Path:
    return Path(os.environ.get("KUBELAB_HOME") or Path.home() / ".kubelab")


@dataclass(frozen=True)
class LabPaths:
    root: Path

    @classmethod
    def for_lab(cls, name: str, home: Path | None = None) -> LabPaths:
        return cls((home or default_home()) / name)

    @property
    def spec(self) -> Path:
        return self.root / "lab.json"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def registry_data(self) -> Path:
        return self.root / "registry"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def ports(self) -> Path:
        return self.run / "ports.json"

    def kubeconfig_of(self, component: str) -> Path:
        return self.config / f"{component}.kubeconfig"

    @property
    def tokens(self) -> Path:
        return self.pki / "tokens.csv"
