"""Builds agents/apiserver/protobuf_fields.json from Kubernetes' generated.proto files.

Usage: python tools/proto_table.py DIR [SOURCE-NOTE]
DIR holds the generated.proto files of k8s.io/api (core/v1, apps/v1, batch/v1, coordination/v1,
discovery/v1, autoscaling/v1) and k8s.io/apimachinery (meta/v1, resource, intstr, runtime), under
any file names. Only wire facts are kept: per message, each field's number, JSON name, type and
whether it repeats. The API server uses the table to read protobuf request bodies.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "agents" / "apiserver" / "protobuf_fields.json"
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


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def parse(text: str) -> tuple[str, dict[str, dict[str, list[object]]]]:
    text = _strip_comments(text)
    package = re.search(r"^\s*package\s+([\w.]+)\s*;", text, re.M)
    if package is None:
        raise ValueError("no package declaration")
    pkg = package.group(1)
    messages: dict[str, dict[str, list[object]]] = {}
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


def resolve(messages: dict[str, dict[str, list[object]]], packages: dict[str, str]) -> list[str]:
    """Qualify every message type name (``PodSpec`` -> ``k8s.io.api.core.v1.PodSpec``).

    A type none of the files defines (the files may come from different releases) becomes
    ``unknown:<name>``; the decoder skips such fields. Returns the unknown names.
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
                candidate = f"{pkg}.{name}"
                if candidate in messages:
                    return candidate
                unknown.append(f"{full} -> {name}")
                return f"unknown:{name}"

            if kind.startswith("map:"):
                _, key, value = kind.split(":")
                entry[1] = f"map:{key}:{qualify(value)}"
            else:
                entry[1] = qualify(kind)
    return unknown


def main() -> int:
    directory = Path(sys.argv[1])
    note = sys.argv[2] if len(sys.argv) > 2 else ""
    messages: dict[str, dict[str, list[object]]] = {}
    packages: dict[str, str] = {}
    for path in sorted(directory.glob("*.proto")):
        pkg, found = parse(path.read_text())
        messages.update(found)
        packages.update({name: pkg for name in found})
    for missing in resolve(messages, packages):
        print(f"warning: type not defined in these files, its fields will be skipped: {missing}")
    OUT.write_text(json.dumps({"source": note, "messages": messages}, sort_keys=True, separators=(",", ":")) + "\n")
    print(f"{len(messages)} messages written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
