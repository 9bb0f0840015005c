"""Field ownership (``metadata.managedFields``) and server-side apply, as kube-apiserver's field manager.

Every write records which manager set which fields. A create, update or patch is an ``Update``: its
manager takes the fields it changed (from whoever held them) and keeps what it held before. An apply
(``PATCH`` with ``application/apply-patch+yaml``) is an ``Apply``: the fields of the applied
configuration are exactly what its manager owns afterwards. Applying a value to a field another manager
owns with a different value is a conflict (409) unless forced, which moves the field over; a field the
manager applied before and no longer applies is removed from the object unless another manager owns it.

Fields are paths of kube's FieldsV1 elements: ``f:<name>`` for a field or map key, ``k:{...}`` for an
item of a list merged by key (the keys are ``patchmeta``'s strategic-merge keys, as kube's
list-map-keys; ports by number and protocol, TCP when left out), ``v:<json>`` for a member of a set of
primitives, and ``.`` for a map or list item itself. Other lists, and structs kube declares atomic, are
one field each. Everything here is pure: the handlers read the object, call :func:`record_update` or
:func:`apply`, and store the result.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from agents.apiserver.patchmeta import LIST_MAP_KEYS, PATCH_META, PatchMeta
from agents.apiserver.status import StatusError
from agents.machinery.objects import Object, deep_copy

Path = tuple[str, ...]
FieldSet = frozenset[Path]
SELF = "."
MANAGER_MAX = 128  # characters of a manager name kube keeps

# Structs kube marks ``+structType=atomic``: owned and replaced as one value.
ATOMIC_MODELS = frozenset({"V1LabelSelector", "V1ObjectReference"})
# Fields kube's field manager never tracks: the system's, and the object's identity.
_IGNORED_TOP = frozenset({"apiVersion", "kind"})
_IGNORED_META = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "managedFields",
        "generateName",
    }
)


class ManagedFieldsEntry(TypedDict, total=False):
    """One entry of ``metadata.managedFields`` (meta/v1 ManagedFieldsEntry)."""

    manager: str
    operation: Literal["Apply", "Update"]
    apiVersion: str
    time: str
    fieldsType: Literal["FieldsV1"]
    fieldsV1: dict[str, Any]
    subresource: str


@dataclass(frozen=True)
class Owner:
    """Who a write is made by: an entry of managedFields is one per (manager, operation, subresource)."""

    manager: str
    operation: str  # "Apply" or "Update"
    api_version: str
    subresource: str = ""

    def same(self, other: Owner) -> bool:
        """One entry's: an applier is the same at every apiVersion, an updater one per apiVersion."""
        version = self.api_version if self.operation == "Update" else ""
        theirs = other.api_version if other.operation == "Update" else ""
        return (self.manager, self.operation, self.subresource, version) == (
            other.manager,
            other.operation,
            other.subresource,
            theirs,
        )


@dataclass(frozen=True)
class Managed:
    """A decoded managedFields entry."""

    owner: Owner
    fields: FieldSet
    time: str


# --- managers --------------------------------------------------------------------------------------


def manager_name(field_manager: str, user_agent: str) -> str:
    """The manager of a write: ``fieldManager`` when given, else the program name of the User-Agent
    (what precedes its first ``/``), as kube derives it; at most 128 characters."""
    name = field_manager or user_agent.split("/", 1)[0]
    return name[:MANAGER_MAX]


# --- types -----------------------------------------------------------------------------------------

_Kind = Literal["struct", "map", "keyed", "set", "atomic", "scalar"]


@dataclass(frozen=True)
class _Node:
    kind: _Kind
    model: str | None = None  # of a struct, or of a map's values / a list's items
    keys: tuple[tuple[str, str | None], ...] = ()  # a keyed list's key fields, each with its value when left out


class Schema:
    """The shape of a kind's fields, from its model definitions and the strategic-merge table."""

    def __init__(self, definitions: Mapping[str, Mapping[str, Any]]) -> None:
        self._defs = definitions

    def root(self, model: str) -> _Node:
        return _Node("struct", model)

    def child(self, node: _Node, name: str, value: Any) -> _Node:
        """The node of ``name`` (a field of a struct, a key of a map) holding ``value``."""
        if node.kind == "map":
            return self._from_schema(None, node.model, value, None) if node.model else self._untyped(value)
        if node.kind != "struct" or node.model is None:
            return self._untyped(value)
        schema = ((self._defs.get(node.model) or {}).get("properties") or {}).get(name)
        if schema is None:
            return self._untyped(value)
        keys = LIST_MAP_KEYS.get((node.model, name))
        return self._from_schema(schema, None, value, PATCH_META.get((node.model, name)), keys)

    def item(self, node: _Node, value: Any) -> _Node:
        """The node of one item of a keyed list."""
        return self._from_schema(None, node.model, value, None) if node.model else self._untyped(value)

    def _from_schema(
        self,
        schema: Mapping[str, Any] | None,
        ref: str | None,
        value: Any,
        meta: PatchMeta | None,
        keys: tuple[tuple[str, str | None], ...] | None = None,
    ) -> _Node:
        if schema is not None and "$ref" in schema:
            ref = str(schema["$ref"])
        if ref is not None:
            if ref in ATOMIC_MODELS or not (self._defs.get(ref) or {}).get("properties"):
                return _Node("atomic" if isinstance(value, dict | list) else "scalar")
            return _Node("struct", ref) if isinstance(value, dict) else _Node("scalar")
        schema = schema or {}
        if schema.get("type") == "array":
            items = schema.get("items") or {}
            if meta is not None and "merge" in meta.strategy.split(","):
                if meta.merge_key:
                    return _Node("keyed", items.get("$ref"), keys or ((meta.merge_key, None),))
                return _Node("set")
            return _Node("atomic")
        if schema.get("type") == "object" and isinstance(value, dict):
            extra = schema.get("additionalProperties")
            if isinstance(extra, Mapping):
                return _Node("map", extra.get("$ref"))
            return _Node("map") if "properties" not in schema else _Node("atomic")
        return self._untyped(value)

    @staticmethod
    def _untyped(value: Any) -> _Node:
        return _Node("map") if isinstance(value, dict) else _Node("atomic" if isinstance(value, list) else "scalar")


# --- paths -----------------------------------------------------------------------------------------


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


# the value a key field has when an item leaves it out (a port's protocol)
_KEY_DEFAULTS = {name: default for keys in LIST_MAP_KEYS.values() for name, default in keys if default is not None}


def item_key(node: _Node, item: Any) -> dict[str, Any] | None:
    """The key of one item of a keyed list (its key fields, defaults filled in); None: it has none."""
    if not isinstance(item, dict):
        return None
    key = {}
    for name, default in node.keys:
        value = item.get(name, default)
        if value is None:
            return None
        key[name] = value
    return key


def fields_of(
    obj: Object, schema: Schema, model: str, *, subresource: str = "", has_status: bool = True, maps: bool = True
) -> FieldSet:
    """Every field ``obj`` sets, as paths: leaves, ``.`` for list items and, with ``maps``, for maps (an
    Update owns the maps it adds; an Apply owns only what it names, as kube's entries show). The
    identity and system fields are left out, as is ``status`` outside the status subresource (when the
    kind has one) and everything else within it."""
    out: set[Path] = set()
    root = schema.root(model)
    for name, value in obj.items():
        if name in _IGNORED_TOP or value is None:
            continue
        if has_status and (name == "status") != (subresource == "status"):
            continue
        if name == "metadata" and isinstance(value, dict):
            meta = {k: v for k, v in value.items() if k not in _IGNORED_META}
            _walk(schema, schema.child(root, name, meta), meta, ("f:metadata",), out, mark=False, maps=maps)
            continue
        _walk(schema, schema.child(root, name, value), value, ("f:" + name,), out, mark=True, maps=maps)
    return frozenset(out)


def _walk(schema: Schema, node: _Node, value: Any, path: Path, out: set[Path], *, mark: bool, maps: bool) -> None:
    if node.kind == "struct" and isinstance(value, dict):
        before = len(out)
        for name, child in value.items():
            if child is not None:
                _walk(schema, schema.child(node, name, child), child, (*path, "f:" + name), out, mark=True, maps=maps)
        if len(out) == before and mark:  # an empty struct is a value of its own
            out.add(path)
        return
    if node.kind == "map" and isinstance(value, dict):
        if mark and maps:
            out.add((*path, SELF))
        for name, child in value.items():
            if child is not None:
                _walk(schema, schema.child(node, name, child), child, (*path, "f:" + name), out, mark=True, maps=maps)
        return
    if node.kind == "keyed" and isinstance(value, list):
        for item in value:
            if (key := item_key(node, item)) is not None:
                here = (*path, "k:" + _compact(key))
                out.add((*here, SELF))
                item_node = schema.item(node, item)
                for name, child in item.items():
                    if child is not None:
                        _walk(
                            schema,
                            schema.child(item_node, name, child),
                            child,
                            (*here, "f:" + name),
                            out,
                            mark=True,
                            maps=maps,
                        )
        return
    if node.kind == "set" and isinstance(value, list):
        out.update((*path, "v:" + _compact(item)) for item in value)
        return
    out.add(path)


_MISSING = object()


def _parsed(text: str) -> Any:
    """The JSON of a ``k:`` or ``v:`` element; ``_MISSING`` when it is not JSON (entries sent by a client
    may hold anything)."""
    try:
        return json.loads(text)
    except ValueError:
        return _MISSING


def value_at(obj: Any, path: Path) -> Any:
    """The value at ``path`` (a ``.`` at the end names its parent); ``_MISSING`` when absent."""
    current = obj
    for element in path:
        if element == SELF:
            break
        current = _step(current, element)
        if current is _MISSING:
            return _MISSING
    return current


def _step(current: Any, element: str) -> Any:
    kind, _, rest = element.partition(":")
    if kind == "f":
        return current.get(rest, _MISSING) if isinstance(current, dict) else _MISSING
    if not isinstance(current, list):
        return _MISSING
    if kind == "k":
        wanted = _parsed(rest)
        if not isinstance(wanted, dict) or not wanted:
            return _MISSING
        for item in current:
            if isinstance(item, dict) and all(item.get(k, _KEY_DEFAULTS.get(k)) == v for k, v in wanted.items()):
                return item
        return _MISSING
    if kind == "v":
        wanted = _parsed(rest)
        return wanted if wanted in current else _MISSING
    return _MISSING


def remove_path(obj: Object, path: Path) -> None:
    """Drop the field (or map, or list item, for a path ending in ``.``) at ``path`` from ``obj``."""
    target = path[:-1] if path and path[-1] == SELF else path
    if not target:
        return
    parent = value_at(obj, target[:-1]) if len(target) > 1 else obj
    kind, _, rest = target[-1].partition(":")
    if kind == "f" and isinstance(parent, dict):
        parent.pop(rest, None)
    elif kind in ("k", "v") and isinstance(parent, list):
        found = _step(parent, target[-1])
        if found is not _MISSING:
            parent[:] = [item for item in parent if item is not found and not (kind == "v" and item == found)]


def _is_key(path: Path) -> bool:
    """Whether ``path`` is the merge key field of a keyed list item."""
    if len(path) < 2 or not path[-2].startswith("k:") or not path[-1].startswith("f:"):
        return False
    keys = _parsed(path[-2][2:])
    return isinstance(keys, dict) and path[-1][2:] in keys


def path_text(path: Path) -> str:
    """A path as kube prints it in conflicts: ``.spec.template.spec.containers[name="web"].image``."""
    out = []
    for element in path:
        kind, _, rest = element.partition(":")
        if element == SELF:
            continue
        if kind == "f":
            out.append("." + rest)
        elif kind == "k":
            keys = _parsed(rest)
            if not isinstance(keys, dict):
                out.append("[" + rest + "]")
                continue
            out.append("[" + ",".join(f"{k}={_compact(v)}" for k, v in sorted(keys.items())) + "]")
        elif kind == "v":
            out.append("[=" + rest + "]")
        else:
            out.append("[" + rest + "]")
    return "".join(out)


# --- FieldsV1 --------------------------------------------------------------------------------------


def encode(fields: Iterable[Path]) -> dict[str, Any]:
    """A field set as FieldsV1: a tree of elements whose leaves are ``{}``."""
    tree: dict[str, Any] = {}
    for path in sorted(fields):
        node = tree
        for element in path:
            node = node.setdefault(element, {})
    return tree


def decode(tree: Mapping[str, Any]) -> FieldSet:
    """The field set a FieldsV1 tree holds (the inverse of :func:`encode`)."""
    out: set[Path] = set()
    stack: list[tuple[Path, Mapping[str, Any]]] = [((), tree)]
    while stack:
        prefix, node = stack.pop()
        for element, child in node.items():
            path = (*prefix, str(element))
            if isinstance(child, Mapping) and child:
                stack.append((path, child))
            else:
                out.add(path)
    return frozenset(out)


def read_managed(obj: Object | None) -> list[Managed]:
    """The managedFields entries of ``obj``; malformed ones are left out."""
    entries = ((obj or {}).get("metadata") or {}).get("managedFields") or []
    out: list[Managed] = []
    for entry in entries if isinstance(entries, list) else []:
        if (
            not isinstance(entry, Mapping)
            or not entry.get("manager")
            or entry.get("operation") not in ("Apply", "Update")
        ):
            continue
        tree = entry.get("fieldsV1")
        owner = Owner(
            str(entry["manager"]),
            str(entry["operation"]),
            str(entry.get("apiVersion", "")),
            str(entry.get("subresource", "")),
        )
        out.append(
            Managed(owner, decode(tree) if isinstance(tree, Mapping) else frozenset(), str(entry.get("time", "")))
        )
    return out


def write_managed(obj: Object, managed: Iterable[Managed]) -> None:
    entries: list[ManagedFieldsEntry] = []
    for item in managed:
        if not item.fields:
            continue
        entry: ManagedFieldsEntry = {
            "manager": item.owner.manager,
            "operation": "Apply" if item.owner.operation == "Apply" else "Update",
            "apiVersion": item.owner.api_version,
            "time": item.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": encode(item.fields),
        }
        if item.owner.subresource:
            entry["subresource"] = item.owner.subresource
        entries.append(entry)
    meta = obj.setdefault("metadata", {})
    if entries:
        meta["managedFields"] = entries
    else:
        meta.pop("managedFields", None)


def _with(managed: list[Managed], owner: Owner, fields: FieldSet, now: str) -> list[Managed]:
    """``managed`` with ``owner``'s entry set to ``fields`` (its time kept when nothing changed)."""
    out: list[Managed] = []
    placed = False
    for item in managed:
        if item.owner.same(owner):
            placed = True
            out.append(Managed(owner, fields, item.time if item.fields == fields and item.time else now))
        else:
            out.append(item)
    if not placed:
        out.append(Managed(owner, fields, now))
    return out


# --- Update ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """What the fields of one write are counted over: the kind's model and which subresource."""

    schema: Schema
    model: str
    subresource: str = ""
    has_status: bool = True

    def fields(self, obj: Object, *, maps: bool = True) -> FieldSet:
        return fields_of(
            obj, self.schema, self.model, subresource=self.subresource, has_status=self.has_status, maps=maps
        )


def record_update(old: Object | None, new: Object, *, scope: Scope, owner: Owner, now: str) -> None:
    """Set ``new``'s managedFields after a create, update or patch by ``owner``: it takes every field it
    added or changed (others lose them), fields the write removed leave every set. The entries the
    client sent (or, when it sent none, the stored ones) are the starting point; a single empty entry
    (``[{}]``) clears them, as kube."""
    sent = (new.get("metadata") or {}).get("managedFields")
    base = new if sent else old
    managed = read_managed(base)
    before = scope.fields(old) if old is not None else frozenset()
    after = scope.fields(new)
    changed = frozenset(p for p in after if p not in before or (p[-1] != SELF and value_at(old, p) != value_at(new, p)))
    removed = before - after
    kept = [Managed(m.owner, m.fields - changed - removed, m.time) for m in managed]
    mine = next((m.fields for m in kept if m.owner.same(owner)), frozenset())
    out = _with(kept, owner, (mine | changed) - removed, now)
    write_managed(new, out)


# --- Apply -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conflict:
    owner: Owner
    path: Path


def conflict_error(conflicts: list[Conflict]) -> StatusError:
    """kube's 409 for an apply that would change fields other managers own."""

    def who(owner: Owner) -> str:
        text = f"conflict with {json.dumps(owner.manager)}"
        if owner.subresource:
            text += f" with subresource {json.dumps(owner.subresource)}"
        if owner.operation == "Update":
            text += f" using {owner.api_version}"
        return text

    causes = [
        {"reason": "FieldManagerConflict", "message": who(c.owner), "field": path_text(c.path)} for c in conflicts
    ]
    if len(conflicts) == 1:
        message = f"Apply failed with 1 conflict: {who(conflicts[0].owner)}: {path_text(conflicts[0].path)}"
    else:
        grouped: dict[str, list[str]] = {}
        for c in conflicts:
            grouped.setdefault(who(c.owner), []).append(path_text(c.path))
        lines = []
        for manager in sorted(grouped):
            lines.append(f"{manager}:")
            lines.extend(f"- {p}" for p in grouped[manager])
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return StatusError(409, "Conflict", message, details={"causes": causes})


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def merge(schema: Schema, node: _Node, live: Any, applied: Any) -> Any:
    """``applied`` merged into ``live`` along the kind's structure: structs and maps field by field,
    keyed lists item by item (new items after the live ones), sets as unions; anything else replaced."""
    if node.kind in ("struct", "map") and isinstance(applied, dict):
        out = dict(live) if isinstance(live, dict) else {}
        for name, value in applied.items():
            out[name] = merge(schema, schema.child(node, name, value), out.get(name), value)
        return out
    if node.kind == "keyed" and isinstance(applied, list):
        items = [deep_copy(i) for i in live] if isinstance(live, list) else []
        for value in applied:
            key = item_key(node, value)
            if key is None:
                items.append(deep_copy(value))
                continue
            at = next((i for i, item in enumerate(items) if item_key(node, item) == key), None)
            if at is None:
                items.append(merge(schema, schema.item(node, value), {}, value))
            else:
                items[at] = merge(schema, schema.item(node, value), items[at], value)
        return items
    if node.kind == "set" and isinstance(applied, list):
        items = list(live) if isinstance(live, list) else []
        items.extend(deep_copy(v) for v in applied if v not in items)
        return items
    return deep_copy(applied)


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
UPGRADING_MANAGER = "kubectl"


def _upgradable(live: Object | None, scope: Scope, owner: Owner) -> FieldSet:
    """Fields ``kubectl apply --server-side`` may take over without forcing: those of the configuration
    the object was last applied with client-side (its annotation), as kube lets the move from
    client-side to server-side apply go without conflicts. Only for the manager ``kubectl``."""
    if owner.manager != UPGRADING_MANAGER:
        return frozenset()
    text = (((live or {}).get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    try:
        last = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return frozenset()
    return scope.fields(_without_nulls(last), maps=False) if isinstance(last, dict) else frozenset()


def apply(live: Object | None, applied: Object, *, scope: Scope, owner: Owner, force: bool, now: str) -> Object:
    """The object after ``owner`` applies ``applied`` to ``live`` (None: it does not exist yet), with
    its managedFields. Raises kube's 409 when the configuration sets fields other managers own to other
    values, unless ``force`` (then those fields become ``owner``'s alone). Conflicts on fields of the
    last client-side applied configuration are forced for ``kubectl`` (:func:`_upgradable`)."""
    config = _without_nulls(applied)
    wanted = scope.fields(config, maps=False)
    managed = read_managed(live)
    conflicts: list[Conflict] = []
    taken: set[Path] = set()
    for item in managed:
        if item.owner.same(owner):
            continue
        for path in sorted(item.fields & wanted):
            if path[-1] == SELF or value_at(live, path) == value_at(config, path):
                continue
            conflicts.append(Conflict(item.owner, path))
            taken.add(path)
    if conflicts and not force:
        unexpected = [c for c in conflicts if c.path not in _upgradable(live, scope, owner)]
        if unexpected:
            raise conflict_error(unexpected)
    managed = [m if m.owner.same(owner) else Managed(m.owner, m.fields - taken, m.time) for m in managed]
    schema = scope.schema
    base: Object = deep_copy(live) if live is not None else {}
    merged: Object = merge(schema, schema.root(scope.model), base, config)
    previous = next((m.fields for m in managed if m.owner.same(owner)), frozenset())
    others = frozenset().union(*(m.fields for m in managed if not m.owner.same(owner)))
    held = others | wanted
    items = _held_items(merged, held)
    for old in sorted(previous - held, key=len):  # whole items first: what was beneath them goes with them
        path = _as_held(merged, old, items)
        if path in held:
            continue
        node = path[:-1] if path[-1] == SELF else path
        if any(len(p) > len(node) and p[: len(node)] == node for p in held):
            continue  # another manager (or this apply) still holds something beneath it
        if _is_key(path):
            continue  # the key of an item that stays
        remove_path(merged, path)
    write_managed(merged, _with(managed, owner, wanted, now))
    return merged


def _held_items(obj: Object, held: FieldSet) -> dict[int, Path]:
    """The keyed list items that held paths name, by identity, with the path that names each."""
    out: dict[int, Path] = {}
    for path in held:
        for i, element in enumerate(path):
            if element.startswith("k:"):
                item = value_at(obj, path[: i + 1])
                if item is not _MISSING:
                    out.setdefault(id(item), path[: i + 1])
    return out


def _as_held(obj: Object, path: Path, items: Mapping[int, Path]) -> Path:
    """``path`` with its innermost keyed list item named as the held paths name it: entries written before
    a port's protocol joined its key name the same item by its number alone."""
    for i in range(len(path) - 1, -1, -1):
        if path[i].startswith("k:"):
            item = value_at(obj, path[: i + 1])
            prefix = items.get(id(item)) if item is not _MISSING else None
            return path if prefix is None else (*prefix, *path[i + 1 :])
    return path


Recorder = Callable[[Object | None, Object], None]


def recorder(*, scope: Scope, owner: Owner, clock: Callable[[], str]) -> Recorder:
    """The hook the store calls on each object it is about to write for an Update by ``owner``."""

    def record(old: Object | None, new: Object) -> None:
        record_update(old, new, scope=scope, owner=owner, now=clock())

    return record
