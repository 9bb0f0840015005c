"""Logging setup shared by the agents: plain text for people, JSON lines for machines.

Records may carry object context (``extra={"object": "pods/default/web-1"}``); both formats show it.
On the nodes the output goes to journald through systemd; the local driver writes it to a file.
"""

from __future__ import annotations

import logging
import sys
import time

import orjson


class _JsonFormatter(logging.Formatter):
    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        obj = getattr(record, "object", None)
        if obj:
            entry["object"] = obj
        if self.tag:
            entry["process"] = self.tag
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class _TextFormatter(logging.Formatter):
    def __init__(self, tag: str) -> None:
        prefix = f"[{tag}] " if tag else ""
        super().__init__(f"%(asctime)s %(levelname)-7s {prefix}%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        obj = getattr(record, "object", None)
        return f"{text} [{obj}]" if obj else text


def setup(level: str = "info", fmt: str = "text", *, tag: str = "") -> None:
    """Log to stderr; ``tag`` (e.g. a worker's name) prefixes text lines and is a field in JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter(tag) if fmt == "json" else _TextFormatter(tag))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
