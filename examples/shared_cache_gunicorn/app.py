"""One zspool.SharedCache for every gunicorn worker: a WSGI key-value service.

Run it (4 workers, one cache in /dev/shm, opened once in the master and inherited by the
workers through fork)::

    gunicorn --preload --workers 4 --bind 127.0.0.1:8000 app:app

    curl -X PUT --data-binary 'hello' http://127.0.0.1:8000/kv/greeting
    curl http://127.0.0.1:8000/kv/greeting     # any worker answers: the cache is shared
    curl http://127.0.0.1:8000/stats

Every response is JSON and names the pid of the worker that served it. Without
``--preload`` each worker opens the cache by its name when it imports this module, which
works as well: the file, not the process, is the cache.

``ZSPOOL_EXAMPLE_CACHE`` sets the cache's name or path (default
``/dev/shm/zspool-example-gunicorn``). The file stays after gunicorn exits (a cache that
outlives a restart starts warm); ``zspool.SharedCache.destroy(name)`` removes it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from zspool import SharedCache

CACHE = os.environ.get("ZSPOOL_EXAMPLE_CACHE", "zspool-example-gunicorn")
cache = SharedCache(CACHE, 64 << 20, compression="lz4", policy="idle-only")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def respond(start_response: StartResponse, status: str, body: dict[str, Any]) -> Iterable[bytes]:
    data = json.dumps({"pid": os.getpid(), **body}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
    if path == "/stats":
        return respond(start_response, "200 OK", {"stats": cache.stats().as_dict()})
    if not path.startswith("/kv/") or len(path) == 4:
        return respond(start_response, "404 Not Found", {"error": "use /kv/<key> or /stats"})
    key = path[4:]
    if method == "GET":
        value = cache.get(key)
        if value is None:
            return respond(start_response, "404 Not Found", {"key": key, "value": None})
        return respond(start_response, "200 OK", {"key": key, "value": value.decode("utf-8", "replace")})
    if method in ("PUT", "POST"):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        cache[key] = environ["wsgi.input"].read(length)
        return respond(start_response, "200 OK", {"key": key, "stored": length})
    if method == "DELETE":
        return respond(start_response, "200 OK", {"key": key, "deleted": cache.pop(key, None) is not None})
    return respond(start_response, "405 Method Not Allowed", {"error": f"{method} is not supported"})
