"""Property-based fuzzing of a lab's API server from the OpenAPI documents it serves (schemathesis).

A fuzzer that knows nothing of this project reads the served OpenAPI v3 documents, one per group-version,
and sends generated requests (valid and invalid bodies, parameters and headers; the coverage, fuzzing and
stateful phases) with the admin's token, each group for a time budget and with one seed. Two checks run
on every answer: ``not_a_server_error`` (no 5xx) and ``response_schema_conformance`` (what the server
returns validates against the schema it publishes). A request that gets no answer within
``REQUEST_TIMEOUT`` is a hang.

Before the run the documents are narrowed so that the fuzzer stays in its own space, and nothing else:

- the ``watch`` and ``follow`` parameters are removed: a stream that lasts is what they ask for, not a
  hang (the streams have property-based tests of their own);
- every namespace in a path is one of the run's namespaces or a name starting with ``fuzz-``, and so is
  the name of a cluster-scoped object (a namespace, a node) in a path;
- collections of cluster-scoped objects (all namespaces, all nodes) are not deleted as a whole;
- a CustomResourceDefinition's schema (``JSONSchemaProps``, recursive through a dozen of its fields) is
  a free-form object: generating the recursive one takes the fuzzer seconds per body.

The fuzzer also sends values it read in answers and values outside the schemas, so a hook
(``fuzzhooks.py``) replaces, right before each request, any path parameter naming a namespace the run
leaves alone. Bodies, query parameters and the rest are generated freely. Afterwards the run checks that the server is
still ready and that the namespaces it did not touch hold exactly what they held before: the same objects
(uid and resourceVersion) in a namespace the run made and filled for that (``sentinel-...``), the same
objects (uid) in the system namespaces, whose leases the control plane renews meanwhile.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubelab_testing import fuzzhooks
from provisioner.lab import kubeconfig
from provisioner.system import processes

CHECKS = ("not_a_server_error", "response_schema_conformance")
STREAMING = ("watch", "follow")  # parameters removed from the documents
REQUEST_TIMEOUT = 30.0  # seconds without an answer that make a request a hang
NAME_PATTERN = "^fuzz-"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
CLUSTER_SCOPED = ("namespaces", "nodes")
FREE_FORM = ("v1.JSONSchemaProps",)  # recursive schemas the fuzzer gets as free-form objects
HANG_ERRORS = ("Network Error", "Unresponsive Operation", "Server Unavailable", "Unhealthy API")


class FuzzError(RuntimeError):
    """The fuzz run itself could not be carried out (the lab does not answer, schemathesis is missing)."""


# --- the lab's API, as the run needs it -------------------------------------------------------------


@dataclass(frozen=True)
class Api:
    """The API server at ``server`` with a bearer token, trusting ``ca_file``."""

    server: str
    token: str
    ca_file: Path

    @classmethod
    def from_kubeconfig(cls, path: Path, workdir: Path) -> Api:
        config = yaml.safe_load(path.read_text())
        cluster = config["clusters"][0]["cluster"]
        ca = workdir / "ca.crt"
        ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        return cls(cluster["server"], kubeconfig.bearer_token(path), ca)

    def call(self, method: str, path: str, body: Any = None, *, timeout: float = 30.0) -> tuple[int, Any]:
        """(HTTP status, JSON or text answer); (0, reason) when the server does not answer."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.server + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        context = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                return int(response.status), _parsed(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _parsed(exc.read())
        except (urllib.error.URLError, OSError) as exc:
            return 0, str(exc)

    def get(self, path: str) -> Any:
        code, answer = self.call("GET", path)
        if code != 200:
            raise FuzzError(f"GET {path}: {code} {answer}")
        return answer


def _parsed(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data.decode(errors="replace")


# --- the documents ---------------------------------------------------------------------------------


def served_documents(api: Api) -> dict[str, dict[str, Any]]:
    """Every group-version's OpenAPI v3 document the server serves, by its path (``apis/apps/v1``)."""
    root = api.get("/openapi/v3")
    return {path: api.get("/openapi/v3/" + path) for path in sorted(root["paths"])}


def _is_cluster_scoped_item(path: str) -> bool:
    parts = path.strip("/").split("/")
    return len(parts) >= 4 and parts[-2] in CLUSTER_SCOPED and parts[-1] == "{name}" and "{namespace}" not in path


def _own_names(namespaces: Iterable[str]) -> dict[str, Any]:
    """A path parameter that names only what the run may touch: its namespaces, or ``fuzz-...``."""
    return {"anyOf": [{"type": "string", "enum": sorted(namespaces)}, {"type": "string", "pattern": NAME_PATTERN}]}


def narrowed(document: Mapping[str, Any], namespaces: Iterable[str]) -> dict[str, Any]:
    """``document`` as the run feeds it to the fuzzer (see the module's docstring). Pure."""
    out = copy.deepcopy(dict(document))
    own = _own_names(namespaces)
    paths: dict[str, Any] = {}
    for path, item in out.get("paths", {}).items():
        cluster_item = _is_cluster_scoped_item(path) or any(f"/{r}/{{name}}/" in path for r in CLUSTER_SCOPED)
        for holder in [item, *(op for op in item.values() if isinstance(op, dict))]:
            if not isinstance(holder.get("parameters"), list):
                continue
            kept = []
            for parameter in holder["parameters"]:
                if parameter.get("in") == "query" and parameter.get("name") in STREAMING:
                    continue
                names_own = parameter.get("name") == "namespace" or (parameter.get("name") == "name" and cluster_item)
                kept.append({**parameter, "schema": own} if parameter.get("in") == "path" and names_own else parameter)
            holder["parameters"] = kept
        whole_collection = path.strip("/").split("/")[-1] in CLUSTER_SCOPED and "{namespace}" not in path
        paths[path] = {k: v for k, v in item.items() if not (whole_collection and k == "delete")}
    out["paths"] = paths
    schemas = out.get("components", {}).get("schemas", {})
    for name in FREE_FORM:
        if name in schemas:
            schemas[name] = {"type": "object", "description": schemas[name].get("description", "")}
    return out


# --- one group -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupResult:
    group: str  # the document's path, e.g. apis/apps/v1
    requests: int  # test cases generated and sent
    server_errors: int  # unique 5xx answers
    schema_mismatches: int  # unique answers that do not validate against the published schema
    hangs: int  # requests that got no answer (timeouts, closed connections)
    other_errors: int  # the fuzzer's own failures to generate or run a case (reported; not the server's)
    seconds: float
    findings: str = ""  # the fuzzer's own report of what it found, when it found anything

    @property
    def clean(self) -> bool:
        """No 5xx, no answer off its schema, no hang (the fuzzer's own errors are reported apart)."""
        return not (self.server_errors or self.schema_mismatches or self.hangs)


def schemathesis_command(
    api: Api, document: Path, *, seconds: float, seed: int, report: Path, workers: int
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        str(document),
        "--url",
        api.server,
        "--header",
        f"Authorization: Bearer {api.token}",
        "--tls-verify",
        str(api.ca_file),
        "--checks",
        ",".join(CHECKS),
        "--max-time",
        str(int(seconds)),
        "--seed",
        str(seed),
        "--request-timeout",
        str(REQUEST_TIMEOUT),
        "--workers",
        str(workers),
        "--suppress-health-check",
        "all",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--output-truncate",
        "true",
        "--output-sanitize",
        "true",
    ]


def result_of(group: str, report: Mapping[str, Any], seconds: float, text: str) -> GroupResult:
    """A group's figures from schemathesis' JSON report (and its printed findings)."""
    failures = report.get("failures") or []
    errors = report.get("errors") or []

    def count(codes: tuple[str, ...]) -> int:
        return sum(int(f.get("count", 1)) for f in failures if f.get("code") in codes)

    hangs = sum(int(e.get("count", 1)) for e in errors if e.get("title") in HANG_ERRORS)
    others = sum(int(e.get("count", 1)) for e in errors if e.get("title") not in HANG_ERRORS)
    found = bool(failures or errors)
    return GroupResult(
        group=group,
        requests=int((report.get("test_cases") or {}).get("generated", 0)),
        server_errors=count(("ST101",)),
        schema_mismatches=count(("ST108",)),
        hangs=hangs,
        other_errors=others + sum(int(f.get("count", 1)) for f in failures if f.get("code") not in ("ST101", "ST108")),
        seconds=seconds,
        findings=_findings(text) if found else "",
    )


def _findings(text: str, limit: int = 6000, width: int = 300) -> str:
    """The fuzzer's report from its failures on, each line cut to ``width`` (tracebacks quote whole files)."""
    start = min((i for i in (text.find("= FAILURES ="), text.find("= ERRORS =")) if i >= 0), default=0)
    lines = text[max(0, start - 40) :].splitlines()
    return "\n".join(line[:width] for line in lines)[:limit]


def fuzz_group(
    api: Api,
    group: str,
    document: Mapping[str, Any],
    *,
    seconds: float,
    seed: int,
    workdir: Path,
    own: tuple[str, ...],
    protected: tuple[str, ...],
    workers: int = 2,
) -> GroupResult:
    """schemathesis against one group's (narrowed) document for ``seconds``, kept to the ``own``
    namespaces and away from the ``protected`` ones."""
    name = group.replace("/", "_")
    spec, report = workdir / f"{name}.json", workdir / f"{name}-report.json"
    spec.write_text(json.dumps(document))
    report.unlink(missing_ok=True)
    command = schemathesis_command(api, spec, seconds=seconds, seed=seed, report=report, workers=workers)
    started = time.monotonic()
    try:
        done = subprocess.run(
            command,
            cwd=workdir,
            capture_output=True,
            text=True,
            check=False,
            env={
                **os.environ,
                "SCHEMATHESIS_HOOKS": fuzzhooks.__file__,
                fuzzhooks.PROTECTED_ENV: ",".join(protected),
                fuzzhooks.OWN_ENV: ",".join(own),
            },
            timeout=seconds + 4 * REQUEST_TIMEOUT + 60,
        )
    except FileNotFoundError as exc:
        raise FuzzError(f"cannot run schemathesis: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else ""
        return GroupResult(group, 0, 0, 0, 1, 0, time.monotonic() - started, f"schemathesis did not finish:\n{out}")
    took = time.monotonic() - started
    if not report.exists():
        raise FuzzError(f"schemathesis wrote no report (exit code {done.returncode}):\n{done.stdout}{done.stderr}")
    (workdir / f"{name}.out").write_text(done.stdout + done.stderr)
    return result_of(group, json.loads(report.read_text()), took, done.stdout)


# --- what the run must leave alone -----------------------------------------------------------------


def snapshot(api: Api, namespaces: Iterable[str], *, versions: Iterable[str] = ()) -> dict[str, str]:
    """Every object in ``namespaces`` (and the namespaces themselves): ``resource/namespace/name`` -> its
    uid, and its resourceVersion too for the namespaces in ``versions``."""
    pinned = set(versions)
    out: dict[str, str] = {}
    for namespace in namespaces:
        code, found = api.call("GET", f"/api/v1/namespaces/{namespace}")
        out[f"namespaces//{namespace}"] = found["metadata"]["uid"] if code == 200 else f"missing ({code})"
    for path, resources in _namespaced_resources(api).items():
        for resource in resources:
            for namespace in namespaces:
                listed = api.get(f"{path}/namespaces/{namespace}/{resource}")
                for item in listed.get("items", []):
                    meta = item["metadata"]
                    state = meta["uid"] + (f"@{meta['resourceVersion']}" if namespace in pinned else "")
                    out[f"{resource}/{namespace}/{meta['name']}"] = state
    return out


def _namespaced_resources(api: Api) -> dict[str, list[str]]:
    """API path (``/api/v1``, ``/apis/apps/v1``) -> its namespaced resources that can be listed: the API
    server's own, not the groups it proxies to an add-on (an APIService with a Service), which store
    nothing here and may be unavailable (a lab without nodes runs no metrics-server)."""
    out: dict[str, list[str]] = {}
    proxied = {
        f"{s['spec']['group']}/{s['spec']['version']}"
        for s in api.get("/apis/apiregistration.k8s.io/v1/apiservices").get("items", [])
        if (s.get("spec") or {}).get("service")
    }
    versions = [g["preferredVersion"]["groupVersion"] for g in api.get("/apis")["groups"]]
    paths = ["/api/v1"] + [f"/apis/{v}" for v in versions if v not in proxied]
    for path in paths:
        listed = api.get(path)["resources"]
        out[path] = [r["name"] for r in listed if r["namespaced"] and "/" not in r["name"] and "list" in r["verbs"]]
    return out


def differences(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    keys = sorted(set(before) | set(after))
    return [
        f"{k}: {before.get(k, 'absent')} -> {after.get(k, 'absent')}" for k in keys if before.get(k) != after.get(k)
    ]


def fill_sentinel(api: Api, namespace: str) -> None:
    """A namespace the run never touches, with a few objects of several groups in it."""
    labels = {"app": "sentinel"}
    objects: list[tuple[str, dict[str, Any]]] = [
        ("/api/v1/namespaces", {"metadata": {"name": namespace}}),
        (f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "kept"}, "data": {"a": "1"}}),
        (f"/api/v1/namespaces/{namespace}/secrets", {"metadata": {"name": "kept"}, "stringData": {"pw": "x"}}),
        (
            f"/api/v1/namespaces/{namespace}/services",
            {"metadata": {"name": "kept"}, "spec": {"selector": labels, "ports": [{"port": 80}]}},
        ),
        (
            f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
            {"metadata": {"name": "kept"}, "spec": {"holderIdentity": "sentinel"}},
        ),
        (
            f"/apis/batch/v1/namespaces/{namespace}/cronjobs",
            {
                "metadata": {"name": "kept"},
                "spec": {
                    "schedule": "0 0 1 1 *",
                    "suspend": True,
                    "jobTemplate": {
                        "spec": {
                            "template": {
                                "spec": {
                                    "restartPolicy": "Never",
                                    "containers": [{"name": "c", "image": "busybox:1.36"}],
                                }
                            }
                        }
                    },
                },
            },
        ),
    ]
    for path, body in objects:
        code, answer = api.call("POST", path, body)
        if code != 201:
            raise FuzzError(f"POST {path}: {code} {answer}")


def ready(api: Api) -> bool:
    code, answer = api.call("GET", "/readyz", timeout=10.0)
    return code == 200 and answer == "ok"


# --- a whole run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    seed: int
    seconds_per_group: float
    groups: tuple[GroupResult, ...]
    ready_after: bool
    untouched_changed: tuple[str, ...]  # differences in the namespaces the run did not touch
    rss_before: int  # bytes of the API server's processes, before and after the run (0: not measured)
    rss_after: int
    namespaces: tuple[str, ...] = field(default=())  # the run's own

    @property
    def requests(self) -> int:
        return sum(g.requests for g in self.groups)

    @property
    def server_errors(self) -> int:
        return sum(g.server_errors for g in self.groups)

    @property
    def schema_mismatches(self) -> int:
        return sum(g.schema_mismatches for g in self.groups)

    @property
    def hangs(self) -> int:
        return sum(g.hangs for g in self.groups)

    @property
    def other_errors(self) -> int:
        return sum(g.other_errors for g in self.groups)

    @property
    def clean(self) -> bool:
        return all(g.clean for g in self.groups) and self.ready_after and not self.untouched_changed

    def figures(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "groups": len(self.groups),
            "seed": self.seed,
            "seconds_per_group": self.seconds_per_group,
            "server_errors": self.server_errors,
            "schema_mismatches": self.schema_mismatches,
            "hangs": self.hangs,
            "other_errors": self.other_errors,
            "ready_after": self.ready_after,
            "untouched_namespaces_unchanged": not self.untouched_changed,
            "rss_before_mib": round(self.rss_before / 2**20, 1),
            "rss_after_mib": round(self.rss_after / 2**20, 1),
            "per_group": {g.group: {"requests": g.requests, "seconds": round(g.seconds, 1)} for g in self.groups},
        }

    def describe(self) -> str:
        lines = [f"seed {self.seed}, {self.seconds_per_group:g} s per group, {len(self.groups)} groups"]
        for g in self.groups:
            lines.append(
                f"  {g.group:32} {g.requests:7,} requests in {g.seconds:5.0f} s: {g.server_errors} server errors,"
                f" {g.schema_mismatches} schema mismatches, {g.hangs} hangs, {g.other_errors} other errors"
            )
        lines.append(
            f"  total {self.requests:,} requests: {self.server_errors} server errors, {self.schema_mismatches}"
            f" schema mismatches, {self.hangs} hangs, {self.other_errors} other errors"
        )
        lines.append(
            f"  ready afterwards: {self.ready_after}; untouched namespaces unchanged: {not self.untouched_changed}"
        )
        if self.rss_before:
            lines.append(
                f"  API server RSS: {self.rss_before / 2**20:.0f} MiB before, {self.rss_after / 2**20:.0f} MiB after"
            )
        for change in self.untouched_changed[:20]:
            lines.append(f"  changed: {change}")
        for g in self.groups:
            if g.findings:
                lines.append(f"--- {g.group}\n{g.findings}")
        return "\n".join(lines)


def run(
    api: Api,
    *,
    seconds_per_group: float,
    seed: int,
    groups: Iterable[str] = (),
    rss: Callable[[], int] = lambda: 0,
    workdir: Path | None = None,
    workers: int = 2,
    progress: Callable[[str], None] = lambda _: None,
) -> Report:
    """Fuzz every served group (or ``groups``, document paths) for ``seconds_per_group`` each with ``seed``,
    in namespaces of the run's own; check the server and the namespaces it did not touch afterwards.
    ``rss``: the API server's resident memory in bytes, read before and after."""
    own_dir = workdir is None
    work = workdir or Path(tempfile.mkdtemp(prefix="kubelab-fuzz-"))
    tag = uuid.uuid4().hex[:6]
    namespaces = (f"fuzz-{tag}-a", f"fuzz-{tag}-b")
    sentinel = f"sentinel-{tag}"
    for namespace in namespaces:
        code, answer = api.call("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
        if code != 201:
            raise FuzzError(f"cannot create the namespace {namespace}: {code} {answer}")
    fill_sentinel(api, sentinel)
    untouched = (*SYSTEM_NAMESPACES, sentinel)
    before = snapshot(api, untouched, versions=(sentinel,))
    documents = served_documents(api)
    wanted = set(groups) or set(documents)
    rss_before = rss()
    results = []
    for group in sorted(wanted):
        progress(f"fuzzing {group} for {seconds_per_group:g} s (seed {seed})")
        result = fuzz_group(
            api,
            group,
            narrowed(documents[group], namespaces),
            seconds=seconds_per_group,
            seed=seed,
            workdir=work,
            own=namespaces,
            protected=untouched,
            workers=workers,
        )
        progress(f"  {result.requests:,} requests, clean: {result.clean}")
        results.append(result)
    rss_after = rss()
    after = snapshot(api, untouched, versions=(sentinel,))
    report = Report(
        seed=seed,
        seconds_per_group=seconds_per_group,
        groups=tuple(results),
        ready_after=ready(api),
        untouched_changed=tuple(differences(before, after)),
        rss_before=rss_before,
        rss_after=rss_after,
        namespaces=namespaces,
    )
    if own_dir and report.clean:
        import shutil  # noqa: PLC0415

        shutil.rmtree(work, ignore_errors=True)
    return report


# --- the API server's memory -----------------------------------------------------------------------


def tree_rss(pid: int, proc: Path = Path("/proc")) -> int:
    """Resident memory in bytes of ``pid`` and every process below it (the API server's workers)."""
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        fields = processes.stat_fields(int(entry.name), proc) if entry.name.isdigit() else None
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = (proc / str(current) / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
        stack.extend(children.get(current, []))
    return total
