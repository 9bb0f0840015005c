"""Auditing: which requests are recorded, at what level, and the ``audit.k8s.io/v1`` Events for them.

kube-apiserver's ``--audit-policy-file`` holds a ``Policy``: rules tried in order, the first whose
every condition holds gives the level (``None``, ``Metadata``, ``Request`` or ``RequestResponse``);
a request no rule matches is not recorded. Conditions: ``users``, ``userGroups``, ``verbs``,
``resources`` (``group``, ``resources`` with ``pods/log``-style subresources and ``*/scale``-style
and ``pods/*`` wildcards, ``resourceNames``), ``namespaces`` ("" is a cluster-scoped resource) and
``nonResourceURLs`` (a trailing ``*`` is a prefix); ``omitStages`` of the policy and of the rule.

Each recorded request gives Events at its stages: ``RequestReceived`` before the handler runs,
``ResponseStarted`` when a long-running request (a watch, logs, exec) starts answering,
``ResponseComplete`` after the answer, ``Panic`` if the handler failed. ``Metadata`` records who,
what and the outcome; ``Request`` adds the request's body; ``RequestResponse`` the answer's too.
The policy and the events are pure (:class:`Policy`, :func:`event`); :class:`AuditLog` only writes
the events as JSON lines (``--audit-log-path``), kept to ``--audit-log-maxsize`` megabytes and
``--audit-log-maxbackup`` older files as kube-apiserver's log backend keeps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from agents.apiserver.requestinfo import RequestInfo
from agents.machinery.errors import KubelabError

log = logging.getLogger(__name__)

LEVELS = ("None", "Metadata", "Request", "RequestResponse")
STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
# where a handler leaves the body it decoded (or the patch), for the Request level
REQUEST_OBJECT: web.RequestKey[Any] = web.RequestKey("audit-request-object", object)
LONG_RUNNING_SUBRESOURCES = frozenset({"log", "exec", "attach", "portforward", "proxy"})
_RULE_KEYS = frozenset(
    {"level", "users", "userGroups", "verbs", "resources", "namespaces", "nonResourceURLs", "omitStages"}
)


class AuditPolicyError(KubelabError):
    """The audit policy file cannot be read or is not a valid Policy."""


@dataclass(frozen=True)
class GroupResources:
    group: str
    resources: tuple[str, ...]  # empty: every resource of the group
    resource_names: tuple[str, ...]

    def matches(self, info: RequestInfo) -> bool:
        if self.group != info.api_group:
            return False
        if self.resource_names and info.name not in self.resource_names:
            return False
        if not self.resources:
            return True
        full = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
        for pattern in self.resources:
            if pattern in ("*", full):
                return True
            if info.subresource and pattern == f"*/{info.subresource}":
                return True
            if pattern == f"{info.resource}/*":
                return True
        return False


@dataclass(frozen=True)
class Rule:
    level: str
    users: tuple[str, ...] = ()
    user_groups: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    resources: tuple[GroupResources, ...] = ()
    namespaces: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()
    omit_stages: frozenset[str] = frozenset()

    def matches(self, info: RequestInfo, user: str, groups: Sequence[str]) -> bool:
        if self.users and user not in self.users:
            return False
        if self.user_groups and not set(groups) & set(self.user_groups):
            return False
        if self.verbs and info.verb not in self.verbs and "*" not in self.verbs:
            return False
        if info.resource_request:
            if self.non_resource_urls:
                return False
            if self.namespaces and info.namespace not in self.namespaces:
                return False
            return not self.resources or any(r.matches(info) for r in self.resources)
        if self.resources or self.namespaces:
            return False
        return not self.non_resource_urls or any(_url_matches(pattern, info.path) for pattern in self.non_resource_urls)


def _url_matches(pattern: str, path: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    return path == pattern


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    omit_stages: frozenset[str] = frozenset()
    _decided: dict[tuple[RequestInfo, str, tuple[str, ...]], tuple[str, frozenset[str]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def level(self, info: RequestInfo, user: str, groups: Sequence[str]) -> tuple[str, frozenset[str]]:
        """The level of the first rule the request matches (``None`` when none does) and the stages
        that are not recorded for it; remembered for requests alike (most are: a controller's
        writes, a node's heartbeats), up to a few thousand kinds of them."""
        key = (info, user, tuple(groups))
        found = self._decided.get(key)
        if found is None:
            found = self._decide(info, user, groups)
            if len(self._decided) >= 4096:
                self._decided.clear()
            self._decided[key] = found
        return found

    def _decide(self, info: RequestInfo, user: str, groups: Sequence[str]) -> tuple[str, frozenset[str]]:
        for rule in self.rules:
            if rule.matches(info, user, groups):
                return rule.level, self.omit_stages | rule.omit_stages
        return "None", self.omit_stages

    @classmethod
    def from_file(cls, path: Path) -> Policy:
        try:
            text = path.read_text()
        except OSError as exc:
            raise AuditPolicyError(f"cannot read audit policy {path}: {exc.strerror}") from exc
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise AuditPolicyError(f"audit policy {path} is not YAML: {exc}") from exc
        return cls.parse(document, where=str(path))

    @classmethod
    def parse(cls, document: Any, *, where: str = "audit policy") -> Policy:
        if not isinstance(document, dict):
            raise AuditPolicyError(f"{where}: not a Policy object")
        if document.get("apiVersion") not in ("audit.k8s.io/v1",) or document.get("kind") != "Policy":
            raise AuditPolicyError(
                f'{where}: apiVersion and kind must be "audit.k8s.io/v1" and "Policy", '
                f"not {document.get('apiVersion')!r} and {document.get('kind')!r}"
            )
        raw_rules = document.get("rules")
        if not isinstance(raw_rules, list) or not raw_rules:
            raise AuditPolicyError(f"{where}: rules: Required value: at least one rule")
        rules = tuple(_rule(raw, f"{where}: rules[{i}]") for i, raw in enumerate(raw_rules))
        return cls(rules, _stages(document.get("omitStages"), f"{where}: omitStages"))


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AuditPolicyError(f"{where}: must be a list of strings")
    return tuple(value)


def _stages(value: Any, where: str) -> frozenset[str]:
    stages = _strings(value, where)
    for stage in stages:
        if stage not in STAGES:
            raise AuditPolicyError(f'{where}: Unsupported value: "{stage}": supported values: {", ".join(STAGES)}')
    return frozenset(stages)


def _rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise AuditPolicyError(f"{where}: not a rule object")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise AuditPolicyError(f'{where}: unknown field "{unknown[0]}"')
    level = raw.get("level")
    if level not in LEVELS:
        raise AuditPolicyError(f'{where}.level: Unsupported value: "{level}": supported values: {", ".join(LEVELS)}')
    resources = []
    for i, group in enumerate(raw.get("resources") or []):
        if not isinstance(group, dict):
            raise AuditPolicyError(f"{where}.resources[{i}]: not a group of resources")
        resources.append(
            GroupResources(
                group=str(group.get("group", "")),
                resources=_strings(group.get("resources"), f"{where}.resources[{i}].resources"),
                resource_names=_strings(group.get("resourceNames"), f"{where}.resources[{i}].resourceNames"),
            )
        )
    rule = Rule(
        level=str(level),
        users=_strings(raw.get("users"), f"{where}.users"),
        user_groups=_strings(raw.get("userGroups"), f"{where}.userGroups"),
        verbs=_strings(raw.get("verbs"), f"{where}.verbs"),
        resources=tuple(resources),
        namespaces=_strings(raw.get("namespaces"), f"{where}.namespaces"),
        non_resource_urls=_strings(raw.get("nonResourceURLs"), f"{where}.nonResourceURLs"),
        omit_stages=_stages(raw.get("omitStages"), f"{where}.omitStages"),
    )
    if rule.non_resource_urls and (rule.resources or rule.namespaces):
        raise AuditPolicyError(f"{where}: rules cannot apply to both regular resources and non-resource URLs")
    return rule


def long_running(info: RequestInfo) -> bool:
    """Requests that answer for long (a watch, logs, exec): they also get a ``ResponseStarted``."""
    return info.verb == "watch" or info.subresource in LONG_RUNNING_SUBRESOURCES


def timestamp(when: float) -> str:
    """RFC 3339 with microseconds, as audit events carry their times."""
    seconds = int(when)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{int((when - seconds) * 1e6):06d}Z"


@dataclass
class Request:
    """One request as audit sees it, from its arrival to its answer."""

    audit_id: str
    info: RequestInfo
    level: str
    omit_stages: frozenset[str]
    request_uri: str
    user: Mapping[str, Any]  # username, uid, groups
    source_ips: tuple[str, ...]
    user_agent: str
    received: float
    request_object: Any = None
    annotations: dict[str, str] = field(default_factory=dict)


RECORD: web.RequestKey[Request] = web.RequestKey("audit-record", Request)


def event(
    request: Request,
    stage: str,
    when: float,
    *,
    code: int | None = None,
    message: str = "",
    response_object: Any = None,
) -> dict[str, Any]:
    """The ``audit.k8s.io/v1`` Event of ``request`` at ``stage``."""
    info = request.info
    out: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": request.level,
        "auditID": request.audit_id,
        "stage": stage,
        "requestURI": request.request_uri,
        "verb": info.verb,
        "user": dict(request.user),
        "sourceIPs": list(request.source_ips),
    }
    if request.user_agent:
        out["userAgent"] = request.user_agent
    if info.resource_request:
        ref = {"resource": info.resource}
        for key, value in (
            ("namespace", info.namespace),
            ("name", info.name),
            ("apiGroup", info.api_group),
            ("apiVersion", info.api_version),
            ("subresource", info.subresource),
        ):
            if value:
                ref[key] = value
        out["objectRef"] = ref
    if code is not None:
        status: dict[str, Any] = {"metadata": {}, "code": code}
        if code >= 400:
            status["status"] = "Failure"
            if message:
                status["message"] = message
        out["responseStatus"] = status
    if request.level in ("Request", "RequestResponse") and request.request_object is not None:
        out["requestObject"] = request.request_object
    if request.level == "RequestResponse" and response_object is not None and stage == "ResponseComplete":
        out["responseObject"] = response_object
    out["requestReceivedTimestamp"] = timestamp(request.received)
    out["stageTimestamp"] = timestamp(when)
    if request.annotations:
        out["annotations"] = dict(request.annotations)
    return out


class AuditLog:
    """Events as JSON lines in a file: written in batches by one task, so a request never waits for
    the disk; the file is rotated past ``max_size_mb`` (0: never), keeping ``max_backups`` older ones
    (``audit.log.1`` the newest)."""

    def __init__(self, path: Path, *, max_size_mb: int = 100, max_backups: int = 1, flush_seconds: float = 0.2):
        self.path = path
        self.max_size = max_size_mb * 1024 * 1024
        self.max_backups = max_backups
        self.flush_seconds = flush_seconds
        self._pending: list[str] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def record(self, document: Mapping[str, Any]) -> None:
        self._pending.append(json.dumps(document, separators=(",", ":")) + "\n")
        self._wake.set()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._write()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.flush_seconds)  # gather a batch
            await asyncio.to_thread(self._write)

    def _write(self) -> None:
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        text = "".join(lines)
        try:
            if self.max_size and self.path.exists() and self.path.stat().st_size + len(text) > self.max_size:
                self._rotate()
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as out:
                out.write(text)
        except OSError as exc:
            log.error("cannot write %d audit events to %s: %s", len(lines), self.path, exc.strerror)

    def _rotate(self) -> None:
        for index in range(self.max_backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            newer = self.path.with_name(f"{self.path.name}.{index - 1}") if index > 1 else self.path
            if index == self.max_backups and older.exists():
                older.unlink()
            if newer.exists():
                newer.replace(older)
        if self.max_backups == 0:
            self.path.unlink(missing_ok=True)
