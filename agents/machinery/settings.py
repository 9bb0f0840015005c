"""One settings object per program: nested dataclasses whose fields are also flags, config-file keys
and environment variables, all under the same name.

A field ``servers`` of a section ``etcd`` is the flag ``--etcd-servers``, the config-file key
``etcd-servers`` and the variable ``<PREFIX>_ETCD_SERVERS``. Precedence, lowest first: defaults,
the file given by ``--config``, the environment, the flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from agents.machinery.errors import KubelabError

T = TypeVar("T")


class SettingsError(KubelabError):
    """A setting is unknown or has a value of the wrong type."""


@dataclasses.dataclass(frozen=True)
class _Leaf:
    name: str  # kebab-case, e.g. etcd-servers
    path: tuple[str, ...]  # attribute path, e.g. ("etcd", "servers")
    type: Any
    help: str


def _leaves(cls: type[Any], prefix: tuple[str, ...] = ()) -> Iterator[_Leaf]:
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        path = (*prefix, field.name)
        if dataclasses.is_dataclass(kind) and isinstance(kind, type):
            yield from _leaves(kind, path)
        else:
            yield _Leaf("-".join(p.replace("_", "-") for p in path), path, kind, str(field.metadata.get("help", "")))


def _convert(leaf: _Leaf, raw: Any, origin: str) -> Any:
    kind = leaf.type
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        if raw is None or raw == "":
            return None
        kind = next(a for a in args if a is not type(None))
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is int:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is str:
            if not isinstance(raw, str | int | float):
                raise ValueError(raw)
            return str(raw)
        if kind is Path:
            return Path(str(raw))
        if typing.get_origin(kind) is tuple:
            if isinstance(raw, Mapping):  # key: value in a config file, as kube's key=value flags
                return tuple(f"{key}={'' if value is None else value}" for key, value in raw.items())
            items = raw if isinstance(raw, list | tuple) else [p for p in str(raw).split(",") if p]
            return tuple(str(i) for i in items)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{origin}: {leaf.name}: invalid value {raw!r}") from exc
    raise SettingsError(f"{leaf.name}: unsupported setting type {kind}")


def _build(cls: type[T], values: Mapping[tuple[str, ...], Any], prefix: tuple[str, ...] = ()) -> T:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        kind = hints[field.name]
        path = (*prefix, field.name)
        if dataclasses.is_dataclass(kind) and isinstance(kind, type):
            kwargs[field.name] = _build(kind, values, path)
        elif path in values:
            kwargs[field.name] = values[path]
    return cls(**kwargs)


def load(cls: type[T], argv: Sequence[str], *, env_prefix: str, prog: str) -> T:
    """Build ``cls`` from defaults, ``--config FILE``, ``<env_prefix>_*`` variables and flags."""
    leaves = list(_leaves(cls))
    parser = argparse.ArgumentParser(prog=prog, description=(cls.__doc__ or "").strip().split("\n")[0])
    parser.add_argument("--config", type=Path, help="YAML file whose keys are these flags' names")
    for leaf in leaves:
        parser.add_argument(f"--{leaf.name}", dest=leaf.name, default=None, help=leaf.help or None)
    flags = vars(parser.parse_args(list(argv)))

    values: dict[tuple[str, ...], Any] = {}
    by_name = {leaf.name: leaf for leaf in leaves}
    config_path: Path | None = flags.pop("config")
    if config_path is not None:
        try:
            document = yaml.safe_load(config_path.read_text()) or {}
        except OSError as exc:
            raise SettingsError(f"cannot read {config_path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise SettingsError(f"{config_path} is not valid YAML: {exc}") from exc
        if not isinstance(document, dict):
            raise SettingsError(f"{config_path}: expected a mapping of setting names to values")
        for key, raw in document.items():
            known = by_name.get(str(key))
            if known is None:
                raise SettingsError(f"{config_path}: unknown setting {key!r}")
            values[known.path] = _convert(known, raw, str(config_path))
    for leaf in leaves:
        env_name = f"{env_prefix}_{leaf.name.replace('-', '_').upper()}"
        if env_name in os.environ:
            values[leaf.path] = _convert(leaf, os.environ[env_name], env_name)
        if flags.get(leaf.name) is not None:
            values[leaf.path] = _convert(leaf, flags[leaf.name], f"--{leaf.name}")
    return _build(cls, values)


def setting(default: Any, help: str) -> Any:
    """A dataclass field with a default and a help text for its flag."""
    if isinstance(default, list | dict | set):
        raise TypeError("use a tuple for sequence defaults")
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class LogSettings:
    level: str = setting("info", "debug, info, warning or error")
    format: str = setting("text", "text or json")


@dataclasses.dataclass(frozen=True)
class LeaderSettings:
    elect: bool = setting(True, "elect a leader through a Lease, so that several copies can run")
    lease_duration: float = setting(15.0, "seconds a leader's lease lasts without renewal")
    renew_deadline: float = setting(10.0, "seconds a leader keeps trying to renew before it stops leading")
    retry_period: float = setting(2.0, "seconds between attempts to acquire or renew the lease")
    resource_name: str = setting("", "name of the Lease in kube-system (default: the component's own)")


@dataclasses.dataclass(frozen=True)
class HealthSettings:
    port: int = setting(0, "port of the /healthz and /readyz endpoints (0: none)")
    bind_address: str = setting("127.0.0.1", "address of the /healthz and /readyz endpoints")
