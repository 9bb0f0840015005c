"""Custom resources: the kinds CustomResourceDefinitions describe, served as the built-in ones are.

kube runs a second API server for them (apiextensions-apiserver) behind the same front door; here they
join the one catalog instead. ``CustomResources`` is a watch-cache index over the definitions, so every
API server instance serves a definition's kind as soon as its cache sees the definition, and stops as
soon as it sees it go: each served version becomes a ``Resource`` in the catalog (discovery, routing and
the watch cache follow), a ``ResourceStore`` with a ``CustomResourceStrategy`` (the structural schema of
``crdschema.py``: pruning, defaults, validation), a definition for the front door's decoder and the
OpenAPI documents, a ``Printer`` for its additionalPrinterColumns, and, for a served version other than
the storage one, a ``None`` conversion (only apiVersion changes).

``DefinitionController`` is kube's naming, establishing and finalizing controllers in one (run by the
leader): it sets the NamesAccepted and Established conditions and ``acceptedNames``, and for a deleted
definition it sets Terminating, deletes every object of the kind, then lifts the
``customresourcecleanup.apiextensions.k8s.io`` finalizer so the definition goes. The planning
(``plan_status``, ``resources_of``, ``printer_of``) is pure; the classes below it execute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents.apiserver import conversion, crdschema, tables
from agents.apiserver.kinds.apiextensions import CLEANUP_FINALIZER, storage_version
from agents.apiserver.kinds.base import Admission, Strategy
from agents.apiserver.registry import DeleteOptions, ListOptions, ResourceStore
from agents.apiserver.resources import Catalog, Resource
from agents.apiserver.status import StatusError, method_not_allowed
from agents.apiserver.validation import Errors
from agents.machinery import objects
from agents.machinery.objects import Object, deep_copy
from agents.machinery.selectors import parse_labels

log = logging.getLogger(__name__)

PREFIX = "/registry/apiextensions.k8s.io/customresourcedefinitions/"
OPENAPI_KEY = "x-kubelab-openapi"  # in a decoder definition: the schema the OpenAPI documents publish
_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


# --- planning: what a definition serves ----------------------------------------------------------


def version_priority(name: str) -> tuple[int, int, int, str]:
    """kube's ordering of versions (the first is preferred): GA, then beta, then alpha, each by number
    from the highest; names not like ``v1beta2`` last, in alphabetical order."""
    match = _VERSION.match(name)
    if match is None:
        return (3, 0, 0, name)
    major, level, minor = int(match.group(1)), match.group(2), int(match.group(3) or 0)
    return ({None: 0, "beta": 1, "alpha": 2}[level], -major, -minor, name)


def model_name(group: str, version: str, kind: str) -> str:
    """The definition name of a custom kind, as kube names it: ``com.example.stable.v1.CronTab``."""
    return ".".join([*reversed(group.split(".")), version, kind])


def _versions(crd: Object) -> list[dict[str, Any]]:
    return [x for x in (crd.get("spec") or {}).get("versions") or [] if isinstance(x, dict)]


def served_versions(crd: Object) -> list[dict[str, Any]]:
    """The served versions, preferred first."""
    return sorted((x for x in _versions(crd) if x.get("served")), key=lambda x: version_priority(str(x["name"])))


def schema_of(version: dict[str, Any]) -> dict[str, Any]:
    return dict((version.get("schema") or {}).get("openAPIV3Schema") or {"type": "object"})


def resources_of(crd: Object) -> tuple[Resource, ...]:
    """The catalog entries a definition serves: one per served version, preferred first."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, stored = str(spec.get("group")), storage_version(crd)
    if not any(x.get("served") and x.get("name") == stored for x in _versions(crd)):
        return ()  # the objects' own version is not served: nothing is (no view of an unserved version)
    out = []
    for version in served_versions(crd):
        name = str(version["name"])
        subresources = version.get("subresources") or {}
        out.append(
            Resource(
                group,
                name,
                str(names.get("kind")),
                str(names.get("plural")),
                spec.get("scope") == "Namespaced",
                model_name(group, name, str(names.get("kind"))),
                tuple(names.get("shortNames") or ()),
                tuple(names.get("categories") or ()),
                tuple(s for s in ("status", "scale") if s in subresources),
                tracks_generation=True,
                storage_version="" if name == stored else stored,
                custom=True,
            )
        )
    return tuple(out)


def decoder_definition(group: str, version: str, schema: dict[str, Any]) -> dict[str, Any]:
    """What the front door checks a body with before the schema does: apiVersion, kind and metadata
    as for every kind, the schema's top-level fields as they come (unknown ones are dropped and
    reported there), the schema itself (the decoder reports the unknown fields beneath), and the
    schema the OpenAPI documents publish."""
    top: dict[str, Any] = {name: {} for name in schema.get("properties") or {} if name not in crdschema.ROOT_FIELDS}
    published = deep_copy(schema)
    properties = published.setdefault("properties", {})
    properties["apiVersion"] = {"type": "string", "description": "APIVersion defines the versioned schema."}
    properties["kind"] = {"type": "string", "description": "Kind is a string value representing the REST resource."}
    properties["metadata"] = {
        "allOf": [{"$ref": "#/components/schemas/v1.ObjectMeta"}],
        "description": "Standard object's metadata.",
    }
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"$ref": "V1ObjectMeta"},
            **top,
        },
        OPENAPI_KEY: published,
        crdschema.STRUCTURAL: deep_copy(schema),
    }


_PATH_PART = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]")


def path_parts(path: str) -> list[str | int] | None:
    """``.spec.items[0].name`` -> ``["spec", "items", 0, "name"]``; None for what is not that simple."""
    parts: list[str | int] = []
    at = 0
    while at < len(path):
        match = _PATH_PART.match(path, at)
        if match is None:
            return None
        name, index, quoted = match.groups()
        parts.append(int(index) if index is not None else name if name is not None else quoted)
        at = match.end()
    return parts


def get_path(obj: Any, path: str) -> Any:
    """The value at a simple JSON path, or None."""
    parts = path_parts(path.strip().removeprefix("{").removesuffix("}"))
    value = obj
    for part in parts or []:
        if isinstance(part, int):
            value = value[part] if isinstance(value, list) and -len(value) <= part < len(value) else None
        else:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            return None
    return value if parts else None


def set_path(obj: Object, path: str, value: Any) -> None:
    """Set the value at a simple dotted path, making the maps on the way."""
    parts = [p for p in path_parts(path) or [] if isinstance(p, str)]
    node = obj
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def _cell(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "date":
        return tables.age(value) if isinstance(value, str) else None
    if kind == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if kind in ("integer", "number", "boolean") or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def printer_of(version: dict[str, Any]) -> tables.Printer:
    """The Table columns of a version: Name, then its additionalPrinterColumns (Age when it has none)."""
    given = version.get("additionalPrinterColumns")
    columns = (
        given
        if given
        else [
            {
                "name": "Age",
                "type": "date",
                "jsonPath": ".metadata.creationTimestamp",
                "description": tables.AGE.description,
            }
        ]
    )
    defined = [
        tables.Column(
            str(c["name"]),
            str(c.get("type", "string")),
            str(c.get("description") or ""),
            int(c.get("priority") or 0),
            str(c.get("format") or ""),
        )
        for c in columns
    ]

    def row(obj: Object) -> tables.Cells:
        return [objects.name_of(obj), *(_cell(get_path(obj, str(c["jsonPath"])), str(c["type"])) for c in columns)]

    return tables.Printer((tables.NAME, *defined), row)


def _condition(
    kind: str, status: bool, *, reason: str, message: str, old: list[dict[str, Any]], now: str
) -> dict[str, Any]:
    text = "True" if status else "False"
    before = next((c for c in old if c.get("type") == kind), None)
    since = before.get("lastTransitionTime") if before is not None and before.get("status") == text else now
    return {"type": kind, "status": text, "lastTransitionTime": since, "reason": reason, "message": message}


def name_conflicts(crd: Object, others: list[Object], builtin: list[Resource]) -> str:
    """Why the definition's names cannot be accepted ("" when they can): another kind of the group
    (built in, or defined earlier and accepted) already has one of them."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group")
    mine = {names.get("plural"), names.get("singular"), *(names.get("shortNames") or [])} - {None, ""}
    for resource in builtin:
        if resource.group == group and (resource.plural in mine or resource.kind == names.get("kind")):
            return f'"{resource.plural}" is already in use'
    for other in others:
        other_spec = other.get("spec") or {}
        if other_spec.get("group") != group or objects.name_of(other) == objects.name_of(crd):
            continue
        accepted = (other.get("status") or {}).get("acceptedNames") or {}
        theirs = {accepted.get("plural"), accepted.get("singular"), *(accepted.get("shortNames") or [])} - {None, ""}
        clash = sorted(mine & theirs)
        if clash:
            return f'"{clash[0]}" is already in use'
        if accepted.get("kind") and accepted.get("kind") == names.get("kind"):
            return f'"{names.get("kind")}" is already in use'
    return ""


def plan_status(crd: Object, others: list[Object], builtin: list[Resource], now: str) -> dict[str, Any]:
    """The status the definition should have: its conditions and accepted names."""
    status = deep_copy(crd.get("status") or {})
    old = list(status.get("conditions") or [])
    names = (crd.get("spec") or {}).get("names") or {}
    conflict = name_conflicts(crd, others, builtin)
    accepted = not conflict
    conditions = [
        _condition(
            "NamesAccepted",
            accepted,
            reason="NoConflicts" if accepted else "NameConflict",
            message=conflict or "no conflicts found",
            old=old,
            now=now,
        ),
        _condition(
            "Established",
            accepted,
            reason="InitialNamesAccepted" if accepted else "NotAccepted",
            message="the initial names have been accepted" if accepted else "not all names are accepted",
            old=old,
            now=now,
        ),
    ]
    if (crd.get("metadata") or {}).get("deletionTimestamp"):
        conditions.append(
            _condition(
                "Terminating",
                True,
                reason="InstanceDeletionInProgress",
                message="CustomResource deletion is in progress",
                old=old,
                now=now,
            )
        )
    if not conflict:
        status["acceptedNames"] = {k: deep_copy(val) for k, val in names.items() if val}
    status["conditions"] = conditions
    status.setdefault("acceptedNames", {"plural": "", "kind": ""})
    status.setdefault("storedVersions", [storage_version(crd)])
    return status


# --- serving: the strategy and store of a custom kind --------------------------------------------


@dataclass(frozen=True)
class CustomKind:
    """What the strategy and store of one served version of a custom kind go by, replaced whenever
    its definition changes: a request is pruned, defaulted and validated by the schema of the version
    it was made at, as kube's (each version its own schema, subresources and columns)."""

    group: str
    kind: str
    version: str
    schema: dict[str, Any]  # the version's openAPIV3Schema
    storage: str  # the storage apiVersion
    scale: dict[str, str] = field(default_factory=dict)
    status: bool = False
    terminating: bool = False


class CustomResourceStrategy(Strategy):
    """Pruning, defaults and validation by the structural schema; generation moves with every change
    but metadata (and status, with a status subresource)."""

    def __init__(self, resource: Resource, custom: CustomKind) -> None:
        super().__init__(resource)
        self.custom = custom

    def default(self, obj: Object) -> None:
        crdschema.prune(obj, self.custom.schema)
        crdschema.apply_defaults(obj, self.custom.schema)

    def validate(self, obj: Object) -> Errors:
        return crdschema.validate(obj, self.custom.schema)

    def validate_status(self, new: Object, old: Object) -> Errors:
        self.default(new)  # a status write is pruned and defaulted as any other write
        return self.validate(new)

    def spec_changed(self, new: Object, old: Object) -> bool:
        skipped = {"metadata", "apiVersion", "kind", *(("status",) if self.custom.status else ())}
        return {k: x for k, x in new.items() if k not in skipped} != {k: x for k, x in old.items() if k not in skipped}

    async def admit_create(self, admission: Admission, obj: Object, *, dry_run: bool) -> None:
        if self.custom.terminating:
            raise method_not_allowed("create not allowed while custom resource definition is terminating")


class CustomResourceStore(ResourceStore):
    """A custom kind's store: its scale subresource reads and writes the definition's replica paths."""

    @property
    def custom(self) -> CustomKind:
        assert isinstance(self.strategy, CustomResourceStrategy)
        return self.strategy.custom

    def scale_of(self, obj: Object) -> Object:
        paths = self.custom.scale
        m = obj.get("metadata") or {}
        replicas = get_path(obj, paths.get("specReplicasPath", ".spec.replicas"))
        status: dict[str, Any] = {"replicas": get_path(obj, paths.get("statusReplicasPath", ".status.replicas")) or 0}
        selector = get_path(obj, paths["labelSelectorPath"]) if paths.get("labelSelectorPath") else None
        if isinstance(selector, str) and selector:
            status["selector"] = selector
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: m[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in m
            },
            "spec": {"replicas": replicas if isinstance(replicas, int) else 0},
            "status": status,
        }

    def set_replicas(self, obj: Object, replicas: int) -> None:
        set_path(obj, self.custom.scale.get("specReplicasPath", ".spec.replicas"), replicas)


StoreFactory = Callable[[Resource, Strategy], CustomResourceStore]


def custom_kind(crd: Object, version: dict[str, Any]) -> CustomKind:
    """What serving ``version`` (an item of the definition's versions) goes by."""
    spec = crd.get("spec") or {}
    group = str(spec.get("group"))
    subresources = version.get("subresources") or {}
    return CustomKind(
        group=group,
        kind=str((spec.get("names") or {}).get("kind")),
        version=str(version["name"]),
        schema=schema_of(version),
        storage=f"{group}/{storage_version(crd)}",
        scale={k: str(val) for k, val in (subresources.get("scale") or {}).items() if val},
        status="status" in subresources,
        terminating=bool((crd.get("metadata") or {}).get("deletionTimestamp")),
    )


def _rewrite(api_version: str) -> Callable[[Object], Object]:
    def convert(obj: Object) -> Object:
        out = dict(obj)
        out["apiVersion"] = api_version
        return out

    return convert


class CustomResources:
    """The definitions the watch cache sees, turned into served kinds (a ``KeyIndex`` of the cache)."""

    prefix = PREFIX

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.builtin = catalog.resources
        self.definitions: dict[str, Any] = {}
        self.stores: dict[str, ResourceStore] = {}
        self.make_store: StoreFactory | None = None
        self.on_change: list[Callable[[], None]] = []
        self.crds: dict[str, Object] = {}  # key -> definition
        self._served: dict[str, tuple[Resource, ...]] = {}  # key -> what it serves
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.controlled = False  # a DefinitionController reads the queue (the leader's); else nothing is queued

    def bind(self, *, definitions: dict[str, Any], stores: dict[str, ResourceStore], make_store: StoreFactory) -> None:
        """Where served kinds go: the decoder's definitions, the API's stores; before the cache starts."""
        self.definitions, self.stores, self.make_store = definitions, stores, make_store

    # --- KeyIndex --------------------------------------------------------------------------------

    def reset(self) -> None:
        for key in list(self._served):
            self._unserve(key)
        self.crds.clear()
        self._publish()

    def put(self, key: str, obj: Object) -> None:
        self.crds[key] = obj
        self._unserve(key)
        if not name_conflicts(obj, self._served_as_accepted(key), list(self.builtin)):
            self._serve(key, obj)
        self._publish()
        if self.controlled:
            self.queue.put_nowait(objects.name_of(obj))

    def _served_as_accepted(self, key: str) -> list[Object]:
        """The other definitions served now, each with the names it is served under as accepted ones
        (its status may not say so yet): a definition whose names clash with theirs is not served."""
        return [
            {
                **crd,
                "status": {**(crd.get("status") or {}), "acceptedNames": (crd.get("spec") or {}).get("names") or {}},
            }
            for other, crd in self.crds.items()
            if other != key and other in self._served
        ]

    def drop(self, key: str) -> None:
        self.crds.pop(key, None)
        self._unserve(key)
        self._publish()

    # --- serving ---------------------------------------------------------------------------------

    def _serve(self, key: str, crd: Object) -> None:
        if self.make_store is None:
            return
        served = resources_of(crd)
        versions = {str(x["name"]): x for x in _versions(crd)}
        for resource in served:
            version = versions[resource.version]
            custom = custom_kind(crd, version)
            self.definitions[resource.model] = decoder_definition(resource.group, resource.version, schema_of(version))
            tables.PRINTERS[tables.printer_key(resource)] = printer_of(version)
            strategy = CustomResourceStrategy(resource, custom)
            if resource.stored:
                self.stores[resource.qualified] = self.make_store(resource, strategy)
            else:
                conversion.CONVERSIONS[(resource.group, resource.kind, resource.version)] = conversion.Conversion(
                    _rewrite(resource.api_version), _rewrite(custom.storage), strategy
                )
        self._served[key] = served

    def _unserve(self, key: str) -> None:
        for resource in self._served.pop(key, ()):
            self.definitions.pop(resource.model, None)
            conversion.CONVERSIONS.pop((resource.group, resource.kind, resource.version), None)
            tables.PRINTERS.pop(tables.printer_key(resource), None)
            if resource.stored:
                self.stores.pop(resource.qualified, None)

    def _publish(self) -> None:
        custom = tuple(r for served in self._served.values() for r in served)
        self.catalog.replace(self.builtin + custom)
        for callback in self.on_change:
            callback()


class DefinitionController:
    """Conditions and accepted names of the definitions, and the cleanup of deleted ones."""

    def __init__(self, custom: CustomResources, crds: ResourceStore) -> None:
        self._custom = custom
        self._crds = crds
        self._task: asyncio.Task[None] | None = None
        self._pending: set[str] = set()

    def start(self) -> None:
        self._custom.controlled = True
        for crd in list(self._custom.crds.values()):
            self._custom.queue.put_nowait(objects.name_of(crd))
        self._task = asyncio.create_task(self._run(), name="crd-controller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            name = await self._custom.queue.get()
            try:
                again = await self.sync(name)
            except asyncio.CancelledError:
                raise
            except StatusError as exc:  # retried: a definition is never left behind
                (log.debug if exc.code == 409 else log.warning)("custom resource definition %s: %s", name, exc)
                again = True
            except Exception:
                log.exception("custom resource definition %s", name)
                again = True
            if again and name not in self._pending:
                self._pending.add(name)
                asyncio.get_running_loop().call_later(1.0, self._requeue, name)

    def _requeue(self, name: str) -> None:
        self._pending.discard(name)
        self._custom.queue.put_nowait(name)

    async def sync(self, name: str) -> bool:
        """Bring one definition's status (and, when deleted, its objects) to what they should be;
        True when it must be looked at again."""
        try:
            crd = (await self._crds.get("", name)).obj()
        except StatusError as exc:
            if exc.code == 404:
                return False
            raise
        others = [o for o in self._custom.crds.values() if objects.name_of(o) != name]
        wanted = plan_status(crd, others, list(self._custom.builtin), objects.now())
        if wanted != crd.get("status"):

            def with_status(current: Object) -> Object:
                current["status"] = plan_status(current, others, list(self._custom.builtin), objects.now())
                return current

            await self._crds.update("", name, with_status, subresource="status", pinned=False)
        if not (crd.get("metadata") or {}).get("deletionTimestamp"):
            return False
        if CLEANUP_FINALIZER not in ((crd.get("metadata") or {}).get("finalizers") or []):
            return False
        return not await self._clean_up(crd)

    async def _clean_up(self, crd: Object) -> bool:
        """Delete every object of the definition's kind; lift the finalizer once none is left."""
        name = objects.name_of(crd)
        spec = crd.get("spec") or {}
        store = self._custom.stores.get(f"{spec.get('names', {}).get('plural')}.{spec.get('group')}")
        if store is not None:
            await store.delete_collection("", ListOptions(labels=parse_labels("")), DeleteOptions())
            if (await store.list("", ListOptions())).items:
                return False  # some wait on finalizers of their own

        def release(current: Object) -> Object:
            meta = objects.meta(current)
            meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f != CLEANUP_FINALIZER]
            return current

        await self._crds.update("", name, release, pinned=False)
        log.info("custom resource definition %s: its objects are deleted", name)
        return True
