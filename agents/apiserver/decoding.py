"""The API's front door: one typed decoding step for every request, as kube-apiserver's decoders.

kube-apiserver turns each request into Go values before anything else runs: the query parameters into
the verb's options struct (``ListOptions``, ``DeleteOptions``, ``PodLogOptions``, ...), the body into the
kind's Go type. A value of the wrong type stops the request there with a 400. This module is that step:
the handlers call :meth:`Decoder.decode` once per request and get typed parameters and, for verbs with a
body, the object checked along its kind's schema (``structural.py``): JSON types, int32/int64 ranges as
the schema's ``format`` says, quantities, times, base64, unknown fields per ``fieldValidation`` (for a
custom kind, also those its structural schema would prune, at any depth, as kube reports them). The
result of a patch is the object the client wants stored, so it goes through the same check
(:meth:`Decoder.patched`). Defaulting, validation, admission and storage only ever see decoded values.

What a request may carry is one table: ``PARAMETERS`` (each operation's query parameters and their types)
and :func:`body_kind` (which kind a body must be, for a resource and a subresource). The OpenAPI
documents publish the same table, so what is published and what is accepted cannot drift apart. A new
resource (a custom resource with its own schema), a new subresource or a new verb is a row here and goes
through the same step.

Wording follows Kubernetes: ``strconv.ParseInt: parsing "x": invalid syntax`` for a bad integer
parameter; ``Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal
string into Go struct field DeploymentSpec.spec.replicas of type int32`` for a body; ``strict decoding
error: unknown field "spec.foo"`` under ``fieldValidation=Strict``. Every problem found is also listed,
with its path, in the Status' ``details.causes``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml
from aiohttp import web

from agents.apiserver import crdschema, negotiation, patch, protobuf
from agents.apiserver.resources import Resource
from agents.apiserver.status import StatusError, bad_request, go_quote, invalid_object, unsupported_media_type
from agents.apiserver.structural import Checker, DecodeError, json_kind
from agents.machinery import codec
from agents.machinery.objects import Object

MAX_BODY = 3 * 1024 * 1024
MAX_DEPTH = 100  # nesting of a body; kind schemas nest about 15 deep, the JSON encoder stops at 255
MAX_NODES = 1_000_000  # values in a YAML body once its aliases are expanded
BODY_TYPES = ("application/json", "application/yaml", protobuf.MEDIA_TYPE)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")
FIELD_VALIDATION = ("Strict", "Warn", "Ignore")


# --- query parameters ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """One query parameter: its name, its type as OpenAPI says it, and what it does."""

    name: str
    type: str  # "string", "boolean", "integer", or "array" (a parameter that may repeat)
    description: str
    format: str = ""  # "int32" or "int64" for integers

    def schema(self) -> dict[str, Any]:
        if self.type == "array":
            return {"type": "array", "items": {"type": "string"}}
        out: dict[str, Any] = {"type": self.type}
        if self.format:
            out["format"] = self.format
        return out


def _p(name: str, description: str, kind: str = "string") -> Parameter:
    return Parameter(name, kind, description, "int64" if kind == "integer" else "")


_PRETTY = _p("pretty", "If 'true', then the output is pretty printed.")
_RESOURCE_VERSION = _p(
    "resourceVersion", "resourceVersion sets a constraint on what resource versions a request may be served from."
)
_INCLUDE_OBJECT = _p("includeObject", "Whether a Table carries each object: None, Metadata (the default) or Object.")
_DRY_RUN = _p("dryRun", "When present, indicates that modifications should not be persisted.", "array")
LIST = (
    _PRETTY,
    _p("labelSelector", "A selector to restrict the list of returned objects by their labels."),
    _p("fieldSelector", "A selector to restrict the list of returned objects by their fields."),
    _p("limit", "limit is a maximum number of responses to return for a list call.", "integer"),
    _p("continue", "The continue option should be set when retrieving more results from the server."),
    _RESOURCE_VERSION,
    _p("resourceVersionMatch", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
    _p(
        "watch",
        "Watch for changes to the described resources and return them as a stream of add, update, and remove"
        " notifications.",
        "boolean",
    ),
    _p("allowWatchBookmarks", 'allowWatchBookmarks requests watch events with type "BOOKMARK".', "boolean"),
    _p("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
    _p("sendInitialEvents", "`sendInitialEvents=true` may be set together with `watch=true`.", "boolean"),
    _INCLUDE_OBJECT,
)
GET = (_PRETTY, _RESOURCE_VERSION, _INCLUDE_OBJECT)
WRITE = (
    _PRETTY,
    _DRY_RUN,
    _p("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
    _p(
        "fieldValidation",
        "fieldValidation instructs the server on how to handle objects in the request containing unknown or"
        " duplicate fields. Valid values are: Ignore, Warn (default), Strict.",
    ),
)
PATCH = (*WRITE, _p("force", 'Force is going to "force" Apply requests.', "boolean"))
DELETE = (
    _PRETTY,
    _DRY_RUN,
    _p("gracePeriodSeconds", "The duration in seconds before the object should be deleted.", "integer"),
    _p("orphanDependents", "Deprecated: please use the PropagationPolicy.", "boolean"),
    _p("propagationPolicy", "Whether and how garbage collection will be performed."),
)
LOG = (
    _PRETTY,
    _p("container", "The container for which to stream logs."),
    _p("follow", "Follow the log stream of the pod.", "boolean"),
    _p("previous", "Return previous terminated container logs.", "boolean"),
    _p("sinceSeconds", "A relative time in seconds before the current time from which to show logs.", "integer"),
    _p("sinceTime", "An RFC3339 timestamp from which to show logs."),
    _p("timestamps", "If true, add an RFC3339 timestamp at the beginning of every line of log output.", "boolean"),
    _p("tailLines", "If set, the number of lines from the end of the logs to show.", "integer"),
    _p(
        "limitBytes",
        "If set, the number of bytes to read from the server before terminating the log output.",
        "integer",
    ),
    _p("insecureSkipTLSVerifyBackend", "Do not verify the serving certificate of the kubelet.", "boolean"),
)
EXEC = (
    _p("command", "Command is the remote command to execute.", "array"),
    _p("container", "Container in which to execute the command."),
    _p("stdin", "Redirect the standard input stream of the pod for this call.", "boolean"),
    _p("stdout", "Redirect the standard output stream of the pod for this call.", "boolean"),
    _p("stderr", "Redirect the standard error stream of the pod for this call.", "boolean"),
    _p("tty", "TTY if true indicates that a tty will be allocated for the exec call.", "boolean"),
)
ATTACH = (
    _p(
        "container",
        "The container in which to execute the command."
        " Defaults to only container if there is only one container in the pod.",
    ),
    _p("stdin", "Stdin if true, redirects the standard input stream of the pod for this call.", "boolean"),
    _p("stdout", "Stdout if true indicates that stdout is to be redirected for the attach call.", "boolean"),
    _p("stderr", "Stderr if true indicates that stderr is to be redirected for the attach call.", "boolean"),
    _p("tty", "TTY if true indicates that a tty will be allocated for the attach call.", "boolean"),
)
PORTFORWARD = (_p("ports", "List of ports to forward Required when using WebSockets", "array"),)
# Operation -> the query parameters it decodes (others are ignored, as Kubernetes ignores them).
PARAMETERS: dict[str, tuple[Parameter, ...]] = {
    "list": LIST,
    "get": GET,
    "create": WRITE,
    "update": WRITE,
    "patch": PATCH,
    "delete": DELETE,
    "deletecollection": tuple({p.name: p for p in (*LIST, *DELETE)}.values()),
    "log": LOG,
    "exec": EXEC,
    "attach": ATTACH,
    "portforward": PORTFORWARD,
}


@dataclass(frozen=True)
class Query:
    """A request's query parameters, each converted to its declared type."""

    values: Mapping[str, Any] = field(default_factory=dict)

    def text(self, name: str, default: str = "") -> str:
        value = self.values.get(name)
        return value if isinstance(value, str) else default

    def texts(self, name: str) -> tuple[str, ...]:
        value = self.values.get(name)
        return value if isinstance(value, tuple) else ()

    def flag(self, name: str) -> bool | None:
        """A boolean parameter; None when absent."""
        value = self.values.get(name)
        return value if isinstance(value, bool) else None

    def integer(self, name: str) -> int | None:
        """An integer parameter; None when absent."""
        value = self.values.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def has(self, name: str) -> bool:
        return name in self.values


class QueryString(Protocol):
    """A parsed query string, where a parameter may repeat (aiohttp's ``request.query``)."""

    def getall(self, key: str, default: list[str]) -> list[str]: ...


_INTEGER = re.compile(r"^[+-]?[0-9]+$")


def parse_int64(text: str) -> int:
    """``strconv.ParseInt(text, 10, 64)``, with its errors as Kubernetes reports them (400)."""
    if not _INTEGER.match(text):
        raise bad_request(f"strconv.ParseInt: parsing {go_quote(text)}: invalid syntax")
    digits = text.lstrip("+-").lstrip("0")
    value = int(text) if len(digits) <= 19 else 2**63
    if not -(2**63) <= value < 2**63:
        raise bad_request(f"strconv.ParseInt: parsing {go_quote(text)}: value out of range")
    return value


def parse_bool(text: str) -> bool:
    """A boolean parameter as Kubernetes converts one: only "0" and "false" (any case) are false."""
    return not (text == "0" or text.lower() == "false")


def decode_query(operation: str, query: QueryString) -> Query:
    values: dict[str, Any] = {}
    for parameter in PARAMETERS.get(operation, ()):
        given = query.getall(parameter.name, [])
        if not given:
            continue
        if parameter.type == "array":
            values[parameter.name] = tuple(given)
        elif parameter.type == "boolean":
            values[parameter.name] = parse_bool(given[0])
        elif parameter.type == "integer":
            values[parameter.name] = parse_int64(given[0])
        else:
            values[parameter.name] = given[0]
    return Query(values)


# --- bodies ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BodyKind:
    """The kind a request body must be: its model (schema), kind and apiVersion."""

    model: str
    kind: str
    api_version: str
    # other apiVersions a body may name (DeleteOptions is meta.k8s.io's, and each group's)
    also: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        return self.api_version.rsplit("/", 1)[-1]

    @property
    def group(self) -> str:
        return self.api_version.rsplit("/", 1)[0] if "/" in self.api_version else ""


SCALE = BodyKind("V1Scale", "Scale", "autoscaling/v1")
BINDING = BodyKind("V1Binding", "Binding", "v1")
TOKEN_REQUEST = BodyKind("AuthenticationV1TokenRequest", "TokenRequest", "authentication.k8s.io/v1")
EVICTION = BodyKind("V1Eviction", "Eviction", "policy/v1")


def body_kind(resource: Resource, subresource: str) -> BodyKind:
    """What the body of a write to ``resource`` (and ``subresource``) must be."""
    if subresource == "scale":
        return SCALE
    if subresource == "binding":
        return BINDING
    if subresource == "token":
        return TOKEN_REQUEST
    if subresource == "eviction":
        return EVICTION
    return BodyKind(resource.model, resource.kind, resource.api_version)


def delete_options_kind(resource: Resource) -> BodyKind:
    return BodyKind("V1DeleteOptions", "DeleteOptions", "v1", also=("meta.k8s.io/v1", resource.api_version))


@dataclass
class Decoded:
    """One request after the front door: its operation, typed parameters and checked body."""

    operation: str
    query: Query
    body: Object | None = None  # the object of a create, update, binding or delete
    patch: Any = None  # the patch document of a patch
    patch_type: str = ""
    kind: BodyKind | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def field_validation(self) -> str:
        return self.query.text("fieldValidation", "Warn") or "Warn"

    @property
    def dry_run(self) -> bool:
        return bool(self.query.texts("dryRun"))


def _depth_exceeded(value: Any, limit: int = MAX_DEPTH) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Sequence[Any] = list(node.values())
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class _YamlLoader(yaml.SafeLoader):
    """YAML as Kubernetes reads it (YAML 1.1 through JSON): timestamps stay strings."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, int | float):
        return _yaml_number(key)
    raise bad_request(f"the body of the request is not valid YAML: a map key of type {type(key).__name__}")


def _yaml_number(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def _as_json(document: Any) -> Any:
    """A YAML document as the JSON Kubernetes converts it to: string keys, integral floats as integers;
    values JSON has not (sets, binary, NaN) refused. Aliases are expanded, within ``MAX_NODES``."""
    budget = [MAX_NODES]

    def convert(value: Any) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise bad_request("the body of the request is not valid YAML: it expands to too many values")
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise bad_request(f"json: unsupported value: {value}")
            return int(value) if value.is_integer() and abs(value) < 1e21 else value
        if isinstance(value, list):
            return [convert(item) for item in value]
        if isinstance(value, dict):
            return {_yaml_key(key): convert(item) for key, item in value.items()}
        raise bad_request(f"the body of the request is not valid YAML: a value of type {type(value).__name__}")

    return convert(document)


def parse_body(data: bytes, content_type: str) -> Any:
    """The body's bytes as a JSON value, by its media type (JSON, YAML or Kubernetes protobuf)."""
    if content_type in ("", "application/json"):
        try:
            return codec.loads(data)
        except codec.DecodeError as exc:
            raise bad_request(f"the body of the request is not valid JSON: {exc}") from exc
    if content_type == protobuf.MEDIA_TYPE:
        return protobuf.decode(data)
    if content_type in YAML_TYPES:
        try:
            document = yaml.load(data, Loader=_YamlLoader)  # a SafeLoader
        except (yaml.YAMLError, ValueError, RecursionError) as exc:
            raise bad_request(f"the body of the request is not valid YAML: {exc}") from exc
        return _as_json(document)
    raise unsupported_media_type(content_type, BODY_TYPES)


class Decoder:
    """The front door: every request's parameters and body, typed and checked, before anything else."""

    def __init__(self, definitions: Mapping[str, Mapping[str, Any]]) -> None:
        self._definitions = definitions
        self._checker = Checker(definitions)

    async def decode(self, request: web.Request, resource: Resource, operation: str, subresource: str) -> Decoded:
        """Parameters of ``operation`` and, for operations with a body, the body, checked (400 when not)."""
        decoded = Decoded(operation, decode_query(operation, request.query))
        for value in decoded.query.texts("dryRun"):
            if value != "All":
                raise bad_request(f'Invalid dryRun value "{value}": only "All" is supported')
        if operation in ("delete", "deletecollection"):
            decoded.body = await self._delete_options(request, resource)
            return decoded
        if operation not in ("create", "update", "patch") or subresource in ("log", "exec", "attach", "portforward"):
            return decoded
        validation = decoded.field_validation
        if validation not in FIELD_VALIDATION:
            raise bad_request(f'fieldValidation "{validation}" is not supported: use one of Ignore, Warn, Strict')
        content_type = negotiation.content_type(request.headers.get("Content-Type"))
        decoded.kind = body_kind(resource, subresource)
        if operation == "patch":
            if content_type == patch.APPLY_PATCH:  # server-side apply: a (partial) object in YAML or JSON
                decoded.patch, decoded.patch_type = _apply_document(await read_body(request)), content_type
                return decoded
            accepted = patch.CUSTOM_PATCH_TYPES if resource.custom else patch.PATCH_TYPES
            if content_type not in accepted:
                raise unsupported_media_type(content_type, (*accepted, patch.APPLY_PATCH))
            decoded.patch, decoded.patch_type = _patch_document(await read_body(request), content_type), content_type
            return decoded
        body = parse_body(await read_body(request), content_type)
        if (resource.review or subresource == "token") and isinstance(body, dict):
            body.pop("status", None)  # the answer's: what a client sends there is ignored
        decoded.body, decoded.warnings = self.check(body, decoded.kind, validation)
        return decoded

    def patched(self, decoded: Decoded, obj: Any) -> Object:
        """The result of a patch, checked as a body would be: it is the object the client wants stored."""
        assert decoded.kind is not None
        checked, decoded.warnings = self.check(obj, decoded.kind, decoded.field_validation)
        return checked

    def check(self, body: Any, kind: BodyKind, field_validation: str) -> tuple[Object, list[str]]:
        """``body`` checked as a ``kind``, and the warnings to send: a 400 Status for what Go's decoder
        refuses, 422 for missing required fields. Unknown fields are refused (Strict), or dropped and
        reported as warnings (Warn) or dropped silently (Ignore)."""
        if not isinstance(body, dict):
            raise bad_request(
                f"couldn't get version/kind; json parse error: json: cannot unmarshal {json_kind(body)} into Go"
                ' value of type struct { APIVersion string "json:\\"apiVersion,omitempty\\""; Kind string'
                ' "json:\\"kind,omitempty\\"" }'
            )
        if _depth_exceeded(body):
            raise bad_request("json: exceeded max depth")
        for name in ("apiVersion", "kind"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise bad_request(
                    f"couldn't get version/kind; json parse error: json: cannot unmarshal {json_kind(body[name])}"
                    f" into Go struct field .{name} of type string"
                )
        if body.get("kind") in (None, ""):
            body["kind"] = kind.kind
        if body.get("apiVersion") in (None, ""):
            body["apiVersion"] = kind.api_version
        if body["kind"] != kind.kind:
            raise bad_request(
                f"the kind in the request body ({body['kind']}) does not match the resource ({kind.kind})"
            )
        if body["apiVersion"] != kind.api_version and body["apiVersion"] not in kind.also:
            raise bad_request(
                f"the API version in the data ({body['apiVersion']}) does not match the expected API"
                f" version ({kind.api_version})"
            )
        problems = self._checker.check(kind.model, body, drop_unknown=field_validation != "Strict")
        structural = self._definitions[kind.model].get(crdschema.STRUCTURAL)
        if structural is not None:  # a custom kind: the fields its schema prunes are unknown too
            problems.unknown += crdschema.unknown_fields(body, structural)
        if problems.decode:
            raise decode_failed(kind, problems.decode)
        if problems.unknown and field_validation == "Strict":
            listed = ", ".join(f'unknown field "{path}"' for path in problems.unknown)
            raise bad_request(
                f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}:'
                f" strict decoding error: {listed}"
            )
        if problems.missing:
            name = (body.get("metadata") or {}).get("name") or ""
            raise invalid_object(kind.kind, str(name), kind.group, problems.missing)
        warnings = [f'unknown field "{path}"' for path in problems.unknown] if field_validation == "Warn" else []
        return body, warnings

    async def _delete_options(self, request: web.Request, resource: Resource) -> Object:
        """The DeleteOptions a delete may carry in its body (empty when it carries none)."""
        if not request.can_read_body:
            return {}
        data = await read_body(request)
        if not data.strip():
            return {}
        content_type = negotiation.content_type(request.headers.get("Content-Type"))
        body = parse_body(data, content_type if content_type in (*YAML_TYPES, protobuf.MEDIA_TYPE) else "")
        checked, _ = self.check(body, delete_options_kind(resource), "Ignore")
        return checked


def _patch_document(data: bytes, content_type: str) -> Any:
    """A patch document: JSON, a list of operations for a JSON patch, an object for the merge patches."""
    try:
        document = codec.loads(data)
    except codec.DecodeError as exc:
        raise bad_request(f"the body of the request is not valid JSON: {exc}") from exc
    if _depth_exceeded(document):
        raise bad_request("json: exceeded max depth")
    if content_type == patch.JSON_PATCH and not isinstance(document, list):
        raise bad_request(f"json: cannot unmarshal {json_kind(document)} into Go value of type jsonpatch.Patch")
    if content_type != patch.JSON_PATCH and not isinstance(document, dict):
        kind = json_kind(document)
        raise bad_request(f"json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}")
    return document


def _apply_document(data: bytes) -> Any:
    """An apply configuration: an object, in YAML (JSON being YAML too)."""
    document = parse_body(data, "application/yaml")
    if _depth_exceeded(document):
        raise bad_request("json: exceeded max depth")
    if not isinstance(document, dict):
        raise bad_request(
            f"json: cannot unmarshal {json_kind(document)} into Go value of type map[string]interface {{}}"
        )
    return document


def decode_failed(kind: BodyKind, errors: Sequence[DecodeError]) -> StatusError:
    """The 400 Kubernetes answers when a body does not decode into its kind's Go type."""
    causes = [{"reason": "FieldValueTypeInvalid", "message": e.message, "field": e.field} for e in errors]
    return StatusError(
        400,
        "BadRequest",
        f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: {errors[0].message}',
        details={"causes": causes},
    )


async def read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise StatusError(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
    data = await request.read()
    if len(data) > MAX_BODY:
        raise StatusError(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
    return data
