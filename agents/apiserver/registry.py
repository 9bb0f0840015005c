"""Storage semantics of the API: what each verb does to objects in etcd.

One ``ResourceStore`` per served resource. It turns a verb into reads and optimistic writes on the
store: resourceVersion is the key's mod_revision, create is a create-if-absent transaction, update
and delete compare the revision they read. Kind-specific behaviour comes from the resource's
``Strategy``; admission services (IP allocation) from a per-request ``RequestAdmission``.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import copy
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.apiserver import meta as objmeta
from agents.apiserver import requesttracing
from agents.apiserver.allocators import RequestAdmission, ServiceAllocator
from agents.apiserver.kinds import Strategy, ephemeralcontainers
from agents.apiserver.resources import Resource
from agents.apiserver.status import (
    FieldError,
    StatusError,
    already_exists,
    bad_request,
    conflict,
    forbidden_request,
    gone,
    invalid,
    invalid_object,
    not_found,
)
from agents.apiserver.storage import KeyValue, Store, prefix_end
from agents.apiserver.storage.errors import (
    CompactedError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    RevisionConflictError,
)
from agents.machinery import codec, objects
from agents.machinery.objects import Object, deep_copy
from agents.machinery.selectors import FieldSelector, LabelSelector, field_path_value, from_structured

log = logging.getLogger(__name__)

MAX_CONFLICT_RETRIES = 16
MAX_REVISION = 2**63  # etcd's revisions are int64
MAX_BATCH = 2**31  # keys one range read asks etcd for (a larger limit is read in several)
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass(frozen=True)
class ListOptions:
    labels: LabelSelector = field(default_factory=LabelSelector)
    fields: FieldSelector = field(default_factory=FieldSelector)
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


@dataclass(frozen=True)
class DeleteOptions:
    grace_period: int | None = None
    propagation: str = ""
    uid: str | None = None
    resource_version: str | None = None
    dry_run: bool = False


@dataclass
class Stored:
    """An object as read from the store: its bytes, decoded lazily."""

    key: str
    value: bytes
    revision: int
    _obj: Object | None = None

    def raw(self) -> bytes:
        return codec.stamp(self.value, self.revision)

    def obj(self) -> Object:
        if self._obj is None:
            self._obj = codec.decode_stored(self.value, self.revision)
        return self._obj


@dataclass
class ListResult:
    items: list[Stored]
    revision: int
    continue_token: str = ""
    remaining: int | None = None


def encode_continue(revision: int, start: str) -> str:
    token = codec.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": start})
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = codec.loads(base64.urlsafe_b64decode(padded))
        revision, start = int(data["rv"]), str(data["start"])
    except (binascii.Error, ValueError, KeyError, TypeError, codec.DecodeError) as exc:
        raise bad_request(f"continue key is not valid: {exc}") from exc
    if data.get("v") != "meta.k8s.io/v1" or not 0 < revision < MAX_REVISION:
        raise bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    return revision, start


def _without_rv(obj: Object) -> Object:
    m = obj.get("metadata") or {}
    if "resourceVersion" not in m:
        return obj
    out = dict(obj)
    out["metadata"] = {k: v for k, v in m.items() if k != "resourceVersion"}
    return out


NamespaceLookup = Callable[[str], Awaitable[str | None]]
# Records who wrote which fields (fieldmanager.py) on the object about to be stored: (stored, new).
Manage = Callable[[Object | None, Object], None]


class ResourceStore:
    def __init__(
        self,
        resource: Resource,
        strategy: Strategy,
        store: Store,
        *,
        allocator: ServiceAllocator,
        namespace_phase: NamespaceLookup,
        default_toleration_seconds: int,
        peek: Callable[[str], KeyValue | None] | None = None,
        accounts: Callable[[str, str], Awaitable[Object | None]] | None = None,
    ) -> None:
        self.resource = resource
        self._accounts = accounts
        self._peek = peek
        self.strategy = strategy
        self._store = store
        self._allocator = allocator
        self._namespace_phase = namespace_phase
        self._toleration_seconds = default_toleration_seconds

    # --- helpers ---------------------------------------------------------------------------------

    def _key(self, namespace: str, name: str) -> str:
        return self.resource.key(namespace, name)

    def _not_found(self, name: str) -> StatusError:
        return not_found(self.resource.plural, name, self.resource.group)

    def _conflict(self, name: str, detail: str = "") -> StatusError:
        return conflict(self.resource.plural, name, self.resource.group, detail)

    def _invalid(self, name: str, errors: list[FieldError]) -> StatusError:
        return invalid_object(self.resource.kind, name, self.resource.group, errors)

    def _admission(self) -> RequestAdmission:
        return RequestAdmission(self._allocator, self._toleration_seconds, self._accounts)

    async def _read(self, namespace: str, name: str) -> tuple[KeyValue, Object]:
        kv, _ = await self._store.get(self._key(namespace, name))
        if kv is None:
            raise self._not_found(name)
        return kv, codec.decode_stored(kv.value, kv.mod_revision)

    async def _read_for_update(self, key: str, *, cached: bool) -> tuple[KeyValue | None, bool]:
        """The value an update starts from: the watch cache's copy when ``cached`` and it has one
        (the update's compare-and-swap catches a stale copy), else etcd's. Says which it was."""
        if cached and self._peek is not None:
            kv = self._peek(key)
            if kv is not None:
                return kv, True
        kv, _ = await self._store.get(key)
        return kv, False

    async def _write(self, kv: KeyValue, new: Object) -> int:
        """Store ``new`` over the value read as ``kv`` if that is still the stored one (its revision)."""
        with requesttracing.etcd_write(kv.key) as span:
            revision = await self._store.update(kv.key, codec.encode_stored(new), expected_revision=kv.mod_revision)
            span.set_attribute("etcd.revision", revision)
        return revision

    def field_value(self, obj: Object, label: str) -> str:
        path = self.resource.field_labels().get(label, label)
        return field_path_value(obj, path)

    def matches(self, obj: Object, opts: ListOptions) -> bool:
        return opts.labels.matches(objects.labels_of(obj)) and opts.fields.matches(lambda f: self.field_value(obj, f))

    # --- reads -----------------------------------------------------------------------------------

    async def get(self, namespace: str, name: str) -> Stored:
        kv, _ = await self._store.get(self._key(namespace, name))
        if kv is None:
            raise self._not_found(name)
        return Stored(kv.key, kv.value, kv.mod_revision)

    async def list(self, namespace: str, opts: ListOptions) -> ListResult:
        prefix = self.resource.collection_prefix(namespace)
        end = prefix_end(prefix)
        start = prefix
        revision = 0
        if opts.continue_token:
            revision, suffix = decode_continue(opts.continue_token)
            start = prefix + suffix
        elif opts.resource_version and opts.resource_version_match == "Exact":
            revision = int(opts.resource_version)
        name = opts.fields.exact("metadata.name")
        if name is not None and not opts.continue_token and (namespace or not self.resource.namespaced):
            start, end = prefix + name, prefix + name + "\0"  # a single-object list reads one key
        filtering = not (opts.labels.empty and opts.fields.empty)
        items: list[Stored] = []
        batch = min(max(opts.limit, 250) if filtering else (opts.limit + 1 if opts.limit else 0), MAX_BATCH)
        try:
            while True:
                page = await self._store.range(start, end, revision=revision, limit=batch)
                revision = page.revision
                for kv in page.kvs:
                    item = Stored(kv.key, kv.value, kv.mod_revision)
                    if filtering and not self.matches(item.obj(), opts):
                        continue
                    if opts.limit and len(items) == opts.limit:
                        token = encode_continue(revision, items[-1].key[len(prefix) :] + "\0")
                        remaining = None if filtering else page.count - opts.limit
                        return ListResult(items, revision, token, remaining)
                    items.append(item)
                if not page.more or not page.kvs:
                    return ListResult(items, revision)
                start = page.kvs[-1].key + "\0"
        except CompactedError as exc:
            if opts.continue_token:
                raise gone(
                    "The provided continue parameter is too old to display a consistent list result. You can"
                    " start a new list without the continue parameter."
                ) from exc
            raise gone(f"too old resource version: {revision}") from exc
        except FutureRevisionError as exc:
            raise StatusError(504, "Timeout", f"Too large resource version: {revision}") from exc

    # --- create ----------------------------------------------------------------------------------

    async def _check_namespace(self, namespace: str) -> None:
        if not self.resource.namespaced:
            return
        phase = await self._namespace_phase(namespace)
        if phase is None:
            raise not_found("namespaces", namespace)
        if phase == "Terminating":
            raise forbidden_request(
                f'{self.resource.plural} "{{name}}" is forbidden: unable to create new content in namespace'
                f" {namespace} because it is being terminated"
            )

    def _prepare_new(self, obj: Object, namespace: str) -> None:
        m = objects.meta(obj)
        if m.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        for name in objmeta.SYSTEM_FIELDS:
            m.pop(name, None)
        if self.resource.namespaced:
            m["namespace"] = namespace
        m["uid"] = objects.new_uid()
        m["creationTimestamp"] = objects.now()
        if self.resource.tracks_generation:
            m["generation"] = 1

    async def create(
        self, namespace: str, body: Object, *, dry_run: bool = False, manage: Manage | None = None
    ) -> Object:
        m = objects.meta(body)
        if self.resource.namespaced:
            try:
                await self._check_namespace(namespace)
            except StatusError as exc:
                exc.message = exc.message.replace("{name}", m.get("name") or m.get("generateName") or "")
                raise
        generate = not m.get("name") and m.get("generateName")
        attempts = 8 if generate else 1
        for attempt in range(attempts):
            obj = deep_copy(body) if attempts > 1 else body
            m = objects.meta(obj)
            if generate:
                m["name"] = objects.generated_name(str(m["generateName"]))
            self._prepare_new(obj, namespace)
            self.strategy.default(obj)
            self.strategy.prepare_create(obj)
            if manage is not None:
                manage(None, obj)
            with requesttracing.step("validation"):
                errors = objmeta.validate(self.resource, m, self.strategy.name_check)
                errors += self.strategy.validate(obj)
                if errors:
                    raise self._invalid(m.get("name") or m.get("generateName") or "", errors)
            key = self._key(namespace, m["name"])
            if self.strategy.reserves_on_create and (await self._store.get(key))[0] is not None:
                if attempt + 1 < attempts:
                    continue
                raise already_exists(self.resource.plural, m["name"], self.resource.group)
            admission = self._admission()
            with requesttracing.admission(self.resource.qualified, "create", namespaced=self.resource.namespaced):
                await self.strategy.admit_create(admission, obj, dry_run=dry_run)
            if dry_run:
                return obj
            requesttracing.stamp(obj)
            try:
                with requesttracing.etcd_write(key) as span:
                    revision = await self._store.create(key, codec.encode_stored(obj))
                    span.set_attribute("etcd.revision", revision)
            except KeyExistsError:
                await admission.rollback()
                if attempt + 1 < attempts:
                    continue
                raise already_exists(self.resource.plural, m["name"], self.resource.group) from None
            except BaseException:
                await admission.rollback()
                raise
            await admission.commit()
            m["resourceVersion"] = str(revision)
            return obj
        raise AssertionError("unreachable")

    # --- update ----------------------------------------------------------------------------------

    async def update(
        self,
        namespace: str,
        name: str,
        mutate: Callable[[Object], Object],
        *,
        dry_run: bool = False,
        subresource: str = "",
        create_body: Object | None = None,
        pinned: bool = True,
        manage: Manage | None = None,
    ) -> tuple[Object, bool]:
        """Read, apply ``mutate`` to a copy, finish with the strategy, write; retry on a lost race.

        ``mutate`` returns the object the client wants; a resourceVersion in it that differs from the
        stored one is a conflict (409). ``pinned=False`` (a patch that names no resourceVersion): the
        version in it is the one read here, so a lost race is retried instead of answered with 409.
        Returns the stored object and whether it was created (PUT of a missing object, for kinds that
        allow it, with ``create_body``).
        """
        cached = True
        for _ in range(MAX_CONFLICT_RETRIES):
            kv, cached = await self._read_for_update(self._key(namespace, name), cached=cached)
            if kv is None:
                if create_body is not None and self.resource.create_on_update and not subresource:
                    return await self.create(namespace, create_body, dry_run=dry_run, manage=manage), True
                raise self._not_found(name)
            current = codec.decode_stored(kv.value, kv.mod_revision)
            wanted = mutate(deep_copy(current))
            wanted_rv = (wanted.get("metadata") or {}).get("resourceVersion") if pinned else None
            if wanted_rv and wanted_rv != str(kv.mod_revision):
                if cached:  # the cache may lag the client: decide on etcd's copy
                    cached = False
                    continue
                raise self._conflict(name)
            with requesttracing.step("validation"):
                new = self._finish_update(wanted, current, subresource)
            if not subresource:
                requesttracing.keep(new, current)
            if manage is not None:
                manage(current, new)
            admission = self._admission()
            if not subresource:
                with requesttracing.admission(self.resource.qualified, "update", namespaced=self.resource.namespaced):
                    await self.strategy.admit_update(admission, new, current, dry_run=dry_run)
            if _without_rv(new) == _without_rv(current) and not kv.stale:  # stale: rewritten with the current key
                return current, False
            if dry_run:
                return new, False
            if self._deletion_complete(new):
                await self._delete_stored(kv, new)
                return new, False
            if not subresource:  # a change: a traced write points the object's trace at its span
                requesttracing.stamp(new)
            try:
                revision = await self._write(kv, new)
            except RevisionConflictError:
                await admission.rollback()
                if wanted_rv:
                    raise self._conflict(name) from None
                cached = False
                continue
            except KeyNotFoundError:
                await admission.rollback()
                raise self._not_found(name) from None
            except BaseException:
                await admission.rollback()
                raise
            await admission.commit()
            objects.meta(new)["resourceVersion"] = str(revision)
            return new, False
        raise self._conflict(name, "too many concurrent updates; please try again")

    def _finish_update(self, wanted: Object, current: Object, subresource: str) -> Object:
        name = objects.name_of(current)
        for field_name in ("apiVersion", "kind"):
            if wanted.get(field_name) not in (None, current.get(field_name)):
                raise bad_request(f"{field_name} cannot be changed: expected {current.get(field_name)!r}")
        wanted["apiVersion"], wanted["kind"] = current["apiVersion"], current["kind"]
        new_meta = objects.meta(wanted)
        if new_meta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({new_meta.get('name')}) does not match the name on the URL ({name})"
            )
        new_meta["name"] = name
        if self.resource.namespaced:
            new_meta.setdefault("namespace", objects.namespace_of(current))
        old_meta = current.get("metadata") or {}
        if subresource == "ephemeralcontainers":  # a pod's ephemeral containers, added, nothing else of it
            new = ephemeralcontainers.updated(wanted, current)
            self.strategy.default(new)
            errors = self.strategy.validate_ephemeral_containers(new, current)
            if errors:
                raise self._invalid(name, errors)
            return new
        if subresource in ("status", "finalize", "approval"):
            new = deep_copy(current)
            if subresource == "status":
                new["status"] = wanted.get("status") or {}
                errors = self.strategy.validate_status(new, current)
            elif subresource == "approval":  # a CSR's conditions, nothing else of it
                status = new.setdefault("status", {})
                status["conditions"] = (wanted.get("status") or {}).get("conditions") or []
                errors = self.strategy.validate_status(new, current)
            else:
                new.setdefault("spec", {})["finalizers"] = (wanted.get("spec") or {}).get("finalizers") or []
                errors = self.strategy.validate(new)
            if errors:
                raise self._invalid(name, errors)
            return new
        objmeta.keep_system_fields(new_meta, old_meta)
        self.strategy.prepare_update(wanted, current)
        self.strategy.default(wanted)
        if self.resource.tracks_generation and self.strategy.spec_changed(wanted, current):
            new_meta["generation"] = int(old_meta.get("generation") or 1) + 1
        errors = objmeta.validate(self.resource, new_meta, self.strategy.name_check)
        errors += objmeta.validate_update(new_meta, old_meta)
        errors += self.strategy.validate_update(wanted, current)
        if errors:
            raise self._invalid(name, errors)
        return wanted

    def _deletion_complete(self, obj: Object) -> bool:
        m = obj.get("metadata") or {}
        if not m.get("deletionTimestamp") or m.get("finalizers"):
            return False
        if self.resource.plural == "namespaces" and (obj.get("spec") or {}).get("finalizers"):
            return False
        return not m.get("deletionGracePeriodSeconds")

    # --- delete ----------------------------------------------------------------------------------

    async def _delete_stored(self, kv: KeyValue, obj: Object) -> int:
        try:
            with requesttracing.etcd_write(kv.key) as span:
                _, revision = await self._store.delete(kv.key, expected_revision=kv.mod_revision)
                span.set_attribute("etcd.revision", revision)
        except RevisionConflictError:
            raise self._conflict(objects.name_of(obj)) from None
        except KeyNotFoundError:
            raise self._not_found(objects.name_of(obj)) from None
        try:
            await self.strategy.released(self._admission(), obj)
        except Exception as exc:  # the object is gone; a leak is repaired later
            log.warning("releasing what %s held failed: %s", self.resource.qualified, exc)
        return revision

    async def delete(self, namespace: str, name: str, options: DeleteOptions) -> Object:
        if self.resource.plural == "namespaces" and name in PROTECTED_NAMESPACES:
            raise forbidden_request(f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        for _ in range(MAX_CONFLICT_RETRIES):
            kv, current = await self._read(namespace, name)
            m = objects.meta(current)
            if options.uid is not None and options.uid != m.get("uid"):
                raise self._conflict(
                    name, f"Precondition failed: UID in precondition: {options.uid}, UID in object meta: {m.get('uid')}"
                )
            if options.resource_version is not None and options.resource_version != m.get("resourceVersion"):
                raise self._conflict(
                    name,
                    "Precondition failed: ResourceVersion in precondition:"
                    f" {options.resource_version}, ResourceVersion in object meta:"
                    f" {m.get('resourceVersion')}",
                )
            new = self._begin_deletion(current, options)
            if new is None:
                if options.dry_run:
                    return current
                try:
                    await self._delete_stored(kv, current)
                except StatusError as exc:
                    if exc.code == 409 and options.resource_version is None:
                        continue
                    raise
                return current
            if new == current or options.dry_run:
                return new
            try:
                revision = await self._write(kv, new)
            except RevisionConflictError:
                continue
            except KeyNotFoundError:
                raise self._not_found(name) from None
            objects.meta(new)["resourceVersion"] = str(revision)
            return new
        raise self._conflict(name, "too many concurrent updates; please try again")

    def _begin_deletion(self, current: Object, options: DeleteOptions) -> Object | None:
        """The object marked for deletion, or None when it can go at once."""
        m = current.get("metadata") or {}
        grace = self.strategy.grace_period(current, options.grace_period)
        finalizers = list(m.get("finalizers") or [])
        if options.propagation == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        elif options.propagation == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        namespace_pending = self.resource.plural == "namespaces" and bool((current.get("spec") or {}).get("finalizers"))
        if not finalizers and grace == 0 and not namespace_pending:
            return None
        new = deep_copy(current)
        nm = objects.meta(new)
        nm["finalizers"] = finalizers
        if not finalizers:
            nm.pop("finalizers")
        now = datetime.now(UTC)
        if m.get("deletionTimestamp"):
            # Deleting again may only shorten a graceful deletion.
            previous = m.get("deletionGracePeriodSeconds")
            if grace and previous is not None and grace < previous:
                nm["deletionGracePeriodSeconds"] = grace
                nm["deletionTimestamp"] = (now + timedelta(seconds=grace)).strftime("%Y-%m-%dT%H:%M:%SZ")
            elif grace == 0 and previous:
                nm["deletionGracePeriodSeconds"] = 0
            if self._deletion_complete(new) and not finalizers:
                return None
            return new
        nm["deletionTimestamp"] = (now + timedelta(seconds=grace)).strftime("%Y-%m-%dT%H:%M:%SZ")
        nm["deletionGracePeriodSeconds"] = grace
        if self.resource.plural == "namespaces":
            new.setdefault("status", {})["phase"] = "Terminating"
        return new

    async def delete_collection(
        self, namespace: str, opts: ListOptions, options: DeleteOptions
    ) -> builtins.list[Object]:
        result = await self.list(namespace, ListOptions(labels=opts.labels, fields=opts.fields))
        deleted: builtins.list[Object] = []
        for item in result.items:
            obj = item.obj()
            try:
                deleted.append(await self.delete(objects.namespace_of(obj), objects.name_of(obj), options))
            except StatusError as exc:
                if exc.code != 404:
                    raise
        return deleted

    # --- subresources ----------------------------------------------------------------------------

    async def bind(self, namespace: str, name: str, binding: Object, *, dry_run: bool) -> None:
        target = binding.get("target") or {}
        node = target.get("name")
        if not node:
            raise self._invalid(name, [FieldError("FieldValueRequired", "target.name", "")])
        if objects.name_of(binding) not in ("", name):
            raise bad_request(f"binding name {objects.name_of(binding)!r} does not match pod name {name!r}")

        def assign(pod: Object) -> Object:
            m = objects.meta(pod)
            if m.get("deletionTimestamp"):
                raise self._conflict(name, "pod is being deleted, cannot be assigned to a host")
            spec = pod.setdefault("spec", {})
            if spec.get("nodeName"):
                raise conflict("pods/binding", name, "", f'pod {name} is already assigned to node "{spec["nodeName"]}"')
            spec["nodeName"] = node
            bm = binding.get("metadata") or {}
            if bm.get("annotations"):
                m.setdefault("annotations", {}).update(bm["annotations"])
            status = pod.setdefault("status", {})
            conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conditions.append(
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": objects.now()}
            )
            status["conditions"] = conditions
            return pod

        await self._update_raw(namespace, name, assign, dry_run=dry_run)

    async def _update_raw(
        self, namespace: str, name: str, change: Callable[[Object], Object], *, dry_run: bool
    ) -> Object:
        """Apply a server-side change (no client intent to validate against) with conflict retries."""
        cached = True
        for _ in range(MAX_CONFLICT_RETRIES):
            kv, cached = await self._read_for_update(self._key(namespace, name), cached=cached)
            if kv is None:
                raise self._not_found(name)
            new = change(codec.decode_stored(kv.value, kv.mod_revision))
            if dry_run:
                return new
            try:
                revision = await self._write(kv, new)
            except RevisionConflictError:
                cached = False
                continue
            objects.meta(new)["resourceVersion"] = str(revision)
            return new
        raise self._conflict(name, "too many concurrent updates; please try again")

    def with_strategy(self, strategy: Strategy) -> ResourceStore:
        """The same objects under another strategy (a custom kind's other served version, whose requests
        its own schema checks)."""
        other = copy.copy(self)
        other.strategy = strategy
        return other

    def set_replicas(self, obj: Object, replicas: int) -> None:
        """Where a write of the scale subresource puts the replicas."""
        obj.setdefault("spec", {})["replicas"] = replicas

    def scale_of(self, obj: Object) -> Object:
        m = obj.get("metadata") or {}
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        selector = spec.get("selector") or {}
        if not self.resource.group and selector:  # core/v1's ReplicationController: a plain label map
            selector = {"matchLabels": selector}
        scale_status: dict[str, Any] = {"replicas": status.get("replicas", 0)}
        rendered = from_structured(selector).render() if selector else ""
        if rendered:
            scale_status["selector"] = rendered
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: m[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in m
            },
            "spec": {"replicas": spec.get("replicas", 0)},
            "status": scale_status,
        }

    async def update_scale(
        self,
        namespace: str,
        name: str,
        change: Callable[[Object], Object],
        *,
        dry_run: bool,
        pinned: bool = True,
        manage: Manage | None = None,
    ) -> Object:
        """Change the replicas through a Scale view; ``pinned=False`` (a patch naming no
        resourceVersion) retries a lost race, as :meth:`update` does."""

        def apply(current: Object) -> Object:
            scale = change(self.scale_of(current))
            replicas = (scale.get("spec") or {}).get("replicas", 0)
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise invalid_object(
                    "Scale",
                    name,
                    "autoscaling",
                    [invalid("spec.replicas", replicas, "must be greater than or equal to 0")],
                )
            self.set_replicas(current, replicas)
            rv = (scale.get("metadata") or {}).get("resourceVersion")
            if rv:
                objects.meta(current)["resourceVersion"] = rv
            return current

        obj, _ = await self.update(namespace, name, apply, dry_run=dry_run, pinned=pinned, manage=manage)
        return self.scale_of(obj)
