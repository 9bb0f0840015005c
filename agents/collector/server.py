"""The collector's HTTP port: OTLP/HTTP in (``POST /v1/traces``), the query API out, and health.

OTLP/HTTP as its specification has it: the body is a binary or JSON ``ExportTraceServiceRequest``
(gzip-compressed when ``Content-Encoding`` says so, which aiohttp undoes as it reads); success is 200 with an
``ExportTraceServiceResponse`` in the request's encoding, a body that cannot be read is 400 with a
``google.rpc.Status`` saying why (exporters do not retry it), another content type is 415.

The query API answers JSON: ``GET /api/v1/traces/{traceId}`` gives one trace's spans (404 with a
Status in kube's shape when none is kept), ``GET /api/v1/traces?limit=N`` the latest traces, newest
first. Callers reach it through the API server's service proxy, which has already authenticated and
authorized them (``services/proxy`` on ``kube-system/trace-collector``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from google.rpc import status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from agents.collector import otlp
from agents.collector.store import TraceStore
from agents.machinery import objects

log = logging.getLogger(__name__)

MAX_BODY = 32 << 20  # bytes of one export request (the SDK's batches are far smaller)
DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
STORE_KEY = web.AppKey("store", TraceStore)


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(objects.failure_status(code, reason, message), status=code)


def _otlp_answer(media: str, *, code: int = 200, message: str = "") -> web.Response:
    """An OTLP/HTTP answer in the request's encoding: the (empty) export response, or a google.rpc.Status."""
    if media == otlp.JSON:
        body: Any = {"code": 3, "message": message} if code != 200 else {}
        return web.Response(status=code, text=json.dumps(body), content_type=otlp.JSON)
    if code != 200:
        data = status_pb2.Status(code=3, message=message).SerializeToString()  # 3: INVALID_ARGUMENT
    else:
        data = ExportTraceServiceResponse().SerializeToString()
    return web.Response(status=code, body=data, content_type=otlp.PROTOBUF)


def app(
    store: TraceStore, *, clock: Callable[[], float] = time.time, ready: Callable[[], bool] = lambda: True
) -> web.Application:
    """The collector's routes over ``store`` (``clock`` gives the arrival time of spans)."""

    async def export(request: web.Request) -> web.Response:
        media = request.content_type.lower()
        if media not in (otlp.PROTOBUF, otlp.JSON):
            return web.Response(
                status=415, text=f"unsupported content type {media!r}: send {otlp.PROTOBUF} or {otlp.JSON}\n"
            )
        try:
            spans = otlp.decode(media, await request.read())  # aiohttp has undone gzip/deflate already
        except otlp.OtlpError as exc:
            log.warning("refused an export request: %s", exc)
            return _otlp_answer(media, code=400, message=str(exc))
        store.add(spans, now=clock())
        return _otlp_answer(media)

    async def one(request: web.Request) -> web.Response:
        trace_id = request.match_info["trace_id"].lower()
        if not otlp.is_hex_id(trace_id, 16):
            return _status(400, "BadRequest", f'invalid trace id "{trace_id}": a trace id is 32 hex digits')
        store.expire(now=clock())
        spans = store.trace(trace_id)
        if spans is None:
            return _status(404, "NotFound", f'trace "{trace_id}" not found')
        return web.json_response({"traceId": trace_id, "spans": spans})

    async def recent(request: web.Request) -> web.Response:
        raw = request.query.get("limit", str(DEFAULT_LIMIT))
        if not raw.isdigit() or not 0 < int(raw) <= MAX_LIMIT:
            return _status(400, "BadRequest", f'invalid limit "{raw}": a number from 1 to {MAX_LIMIT}')
        store.expire(now=clock())
        return web.json_response({"traces": store.recent(int(raw))})

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_request: web.Request) -> web.Response:
        return web.Response(text="ok") if ready() else web.Response(text="not ready", status=503)

    application = web.Application(client_max_size=MAX_BODY)
    application[STORE_KEY] = store
    application.router.add_post("/v1/traces", export)
    application.router.add_get("/api/v1/traces", recent)
    application.router.add_get("/api/v1/traces/{trace_id}", one)
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/readyz", readyz)
    return application
