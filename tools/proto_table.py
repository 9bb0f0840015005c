"""Builds agents/apiserver/protobuf_fields.json from the generated.proto files of one Kubernetes release.

Usage:
    python tools/proto_table.py --api GITDIR --apimachinery GITDIR --tag TAG [--out FILE]

Each GITDIR is a git directory (bare, or a clone's .git) of k8s.io/api and of k8s.io/apimachinery;
TAG is a tag both carry (their v0.37.x tags belong to Kubernetes v1.37.x). The files are read with
``git show TAG:PATH``, so no work tree is needed and every file comes from the same release. The
walk starts at the generated.proto of each group/version the API server reads protobuf bodies for
(``GROUPS``, the groups of agents/apiserver/protobuf.py's package map) and follows their imports,
so every message type a field names is defined. Only wire facts are kept: per message, each field's
number, JSON name, type and whether it repeats. ``source`` records the tag, the commit it names in
each repository and the files read, so the table can be traced and rebuilt.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

OUT = Path(__file__).resolve().parent.parent / "agents" / "apiserver" / "protobuf_fields.json"
API = "k8s.io/api"
APIMACHINERY = "k8s.io/apimachinery"
# The group/versions whose objects the API server decodes from protobuf (core/v1 is the legacy group).
GROUPS = (
    "core/v1",
    "apps/v1",
    "batch/v1",
    "autoscaling/v1",
    "coordination/v1",
    "discovery/v1",
    "rbac/v1",
    "authorization/v1",
    "authentication/v1",
    "certificates/v1",
    "policy/v1",
    "networking/v1",
)

# Fields whose proto name is not their JSON name (the Go field's protobuf tag says ``aPIGroup``, its json
# tag ``apiGroup``): message -> proto name -> JSON name. generated.proto cannot tell; the Go types can.
JSON_NAMES = {
    "k8s.io.api.networking.v1.IngressClassParametersReference": {"aPIGroup": "apiGroup"},
}

_IMPORT = re.compile(r'^\s*import\s+"([^"]+)"\s*;', re.M)
_FIELD = re.compile(r"^\s*(optional|repeated|required)?\s*([\w.]+)\s+(\w+)\s*=\s*(\d+)")
_MAP = re.compile(r"^\s*map\s*<\s*([\w.]+)\s*,\s*([\w.]+)\s*>\s*(\w+)\s*=\s*(\d+)")
SCALARS = {
    "string",
    "bytes",
    "bool",
    "int32",
    "int64",
    "uint32",
    "uint64",
    "sint32",
    "sint64",
    "double",
    "float",
    "fixed32",
    "fixed64",
}

Messages = dict[str, dict[str, list[object]]]


class Source(TypedDict):
    tag: str
    commits: dict[str, str]  # module -> the commit the tag names there
    files: list[str]  # import paths of the files read


class Table(TypedDict):
    source: Source
    messages: Messages  # full message name -> field number -> [JSON name, type, repeated]


class TableError(Exception):
    """The files cannot be read, or they do not make a complete table."""


@dataclass(frozen=True)
class Repository:
    """One upstream repository, read through its git directory."""

    module: str  # the Go module path its proto imports start with, e.g. "k8s.io/api"
    git_dir: Path

    def _git(self, *args: str) -> str:
        result = subprocess.run(
            ["git", f"--git-dir={self.git_dir}", *args], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise TableError(f"{self.module} ({self.git_dir}): git {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def commit(self, tag: str) -> str:
        return self._git("rev-parse", "--verify", f"{tag}^{{commit}}").strip()

    def read(self, tag: str, path: str) -> str:
        return self._git("show", f"{tag}:{path}")


def collect(repositories: list[Repository], tag: str) -> dict[str, str]:
    """Import path -> text of each file reachable from ``GROUPS`` through imports."""
    pending = [f"{API}/{group}/generated.proto" for group in GROUPS]
    files: dict[str, str] = {}
    while pending:
        name = pending.pop()
        if name in files:
            continue
        owner = next((r for r in repositories if name.startswith(f"{r.module}/")), None)
        if owner is None:
            raise TableError(f"{name} is in neither {API} nor {APIMACHINERY}")
        files[name] = owner.read(tag, name.removeprefix(f"{owner.module}/"))
        pending.extend(_IMPORT.findall(files[name]))
    return dict(sorted(files.items()))


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def parse(text: str) -> tuple[str, Messages]:
    """The file's package and its messages (nested ones by dotted name), fields keyed by number."""
    text = _strip_comments(text)
    package = re.search(r"^\s*package\s+([\w.]+)\s*;", text, re.M)
    if package is None:
        raise TableError("no package declaration")
    pkg = package.group(1)
    messages: Messages = {}
    stack: list[str] = []
    for line in text.splitlines():
        opened = re.match(r"^\s*message\s+(\w+)\s*\{", line)
        if opened:
            stack.append(opened.group(1))
            messages[".".join([pkg, *stack])] = {}
            continue
        if re.match(r"^\s*(enum|oneof)\s+\w+\s*\{", line):
            stack.append("")
            continue
        if line.strip().startswith("}"):
            if stack:
                stack.pop()
            continue
        if not stack or not stack[-1]:
            continue
        current = messages[".".join([pkg, *stack])]
        mapped = _MAP.match(line)
        if mapped:
            key, value, name, number = mapped.groups()
            current[number] = [name, f"map:{key}:{value}", False]
            continue
        field = _FIELD.match(line)
        if field:
            label, kind, name, number = field.groups()
            current[number] = [name, kind, label == "repeated"]
    return pkg, messages


def resolve(messages: Messages, packages: dict[str, str]) -> list[str]:
    """Qualify every message type name (``PodSpec`` -> ``k8s.io.api.core.v1.PodSpec``).

    Returns the names no file defines ("message -> type"); a complete table has none.
    """
    unknown: list[str] = []
    for full, fields in messages.items():
        pkg = packages[full]
        for entry in fields.values():
            kind = str(entry[1])

            def qualify(name: str, pkg: str = pkg, full: str = full) -> str:
                name = name.lstrip(".")
                if name in SCALARS or name in messages:
                    return name
                if f"{pkg}.{name}" in messages:
                    return f"{pkg}.{name}"
                unknown.append(f"{full} -> {name}")
                return name

            if kind.startswith("map:"):
                _, key, value = kind.split(":")
                entry[1] = f"map:{key}:{qualify(value)}"
            else:
                entry[1] = qualify(kind)
    return unknown


def build(repositories: list[Repository], tag: str) -> Table:
    """The whole table: its source and every message of the files reached from ``GROUPS``."""
    commits = {r.module: r.commit(tag) for r in repositories}
    files = collect(repositories, tag)
    messages: Messages = {}
    packages: dict[str, str] = {}
    for name, text in files.items():
        try:
            pkg, found = parse(text)
        except TableError as exc:
            raise TableError(f"{name}: {exc}") from exc
        messages.update(found)
        packages.update(dict.fromkeys(found, pkg))
    unknown = resolve(messages, packages)
    if unknown:
        raise TableError("types no file defines: " + ", ".join(unknown))
    for message, renamed in JSON_NAMES.items():
        for entry in messages.get(message, {}).values():
            entry[0] = renamed.get(str(entry[0]), entry[0])
    return {"source": {"tag": tag, "commits": commits, "files": list(files)}, "messages": messages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--api", type=Path, required=True, help=f"git directory of {API}")
    parser.add_argument("--apimachinery", type=Path, required=True, help=f"git directory of {APIMACHINERY}")
    parser.add_argument("--tag", required=True, help="a tag of both repositories, e.g. v0.37.0-beta.0")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the table (default: %(default)s)")
    args = parser.parse_args(argv)
    repositories = [Repository(API, args.api), Repository(APIMACHINERY, args.apimachinery)]
    try:
        table = build(repositories, args.tag)
    except TableError as exc:
        print(f"proto_table: {exc}", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps(table, sort_keys=True, separators=(",", ":")) + "\n")
    print(f"{len(table['messages'])} messages from {args.tag} written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
