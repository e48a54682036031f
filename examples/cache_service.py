"""A small threaded HTTP cache in front of an upstream, on zspool.Cache (standard library only).

    python examples/cache_service.py --upstream http://127.0.0.1:9000 --port 8080 --maxbytes 64MiB

Routes:

- ``GET /<path>``: the upstream's response for ``<path>``, from the cache when it is there
  (header ``X-Cache: HIT``) or fetched and cached (``X-Cache: MISS``). Only 200 responses
  are cached, for ``--ttl`` seconds.
- ``GET /_stats``: ``cache.stats()`` as JSON.
- ``GET /_metrics``: the same numbers in the Prometheus text format.

The response body and its content type are cached together as one ``bytes`` value; the
cache compacts itself with the ``idle-only`` policy (a reclaimer thread).
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import zspool

UPSTREAM_TIMEOUT_S = 10.0


def pack(content_type: str, body: bytes) -> bytes:
    return content_type.encode() + b"\n" + body


def unpack(value: bytes) -> tuple[str, bytes]:
    content_type, _, body = value.partition(b"\n")
    return content_type.decode(), body


def prometheus(stats: zspool.CacheStats) -> str:
    """The cache's stats in the Prometheus text exposition format."""
    counters = {
        "hits": "Lookups that found an entry",
        "misses": "Lookups that found none",
        "evictions": "Entries evicted to stay within the budget",
        "expirations": "Entries dropped because their TTL passed",
    }
    gauges = {
        "entries": ("Live entries", stats.entries),
        "payload_bytes": ("Key and value bytes before compression", stats.payload_bytes),
        "stored_bytes": ("Bytes of stored entries (the budgeted size)", stats.stored_bytes),
        "maxsize_bytes": ("The byte budget", stats.maxsize),
        "compression_ratio": ("payload_bytes / stored_bytes", stats.compression_ratio),
        "index_bytes": ("Heap bytes of the Rust index", stats.index_bytes),
        "pool_mem_used_bytes": ("Bytes of pages the pool holds", stats.pool.mem_used_bytes),
        "pool_pages_compacted": ("Pages freed by compaction", stats.pool.pages_compacted),
    }
    lines = []
    for name, help_text in counters.items():
        lines += [
            f"# HELP zspool_cache_{name}_total {help_text}.",
            f"# TYPE zspool_cache_{name}_total counter",
            f"zspool_cache_{name}_total {getattr(stats, name)}",
        ]
    for name, (help_text, value) in gauges.items():
        lines += [f"# HELP zspool_cache_{name} {help_text}.", f"# TYPE zspool_cache_{name} gauge", f"zspool_cache_{name} {value}"]
    return "\n".join(lines) + "\n"


def make_server(cache: zspool.Cache, upstream: str, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server (not yet serving) that caches ``upstream``'s responses in ``cache``."""
    upstream = upstream.rstrip("/")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            pass

        def reply(self, status: int, content_type: str, body: bytes, cache_state: str | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if cache_state:
                self.send_header("X-Cache", cache_state)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # the stdlib's name
            if self.path == "/_stats":
                self.reply(200, "application/json", json.dumps(cache.stats().as_dict()).encode())
            elif self.path == "/_metrics":
                self.reply(200, "text/plain; version=0.0.4", prometheus(cache.stats()).encode())
            else:
                self.proxy()

        def proxy(self) -> None:
            key = self.path
            hit = cache.get(key)
            if hit is not None:
                content_type, body = unpack(hit)
                self.reply(200, content_type, body, "HIT")
                return
            try:
                with urllib.request.urlopen(upstream + self.path, timeout=UPSTREAM_TIMEOUT_S) as resp:
                    body = resp.read()
                    content_type = resp.headers.get("Content-Type", "application/octet-stream")
            except urllib.error.HTTPError as e:
                self.reply(e.code, "text/plain", f"upstream said {e.code}\n".encode(), "MISS")
                return
            except OSError as e:
                self.reply(502, "text/plain", f"upstream unreachable: {e}\n".encode(), "MISS")
                return
            try:
                cache[key] = pack(content_type, body)
            except ValueError:
                pass  # larger than the whole cache: serve it uncached
            self.reply(200, content_type, body, "MISS")

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def parse_bytes(text: str) -> int:
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", required=True, help="base URL to cache, e.g. http://127.0.0.1:9000")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--maxbytes", type=parse_bytes, default=64 << 20, help="cache budget (e.g. 64MiB)")
    parser.add_argument("--ttl", type=float, default=60.0, help="seconds a response stays cached")
    parser.add_argument("--compression", choices=["lz4", "zstd"], default="lz4")
    args = parser.parse_args(argv)
    cache = zspool.Cache(args.maxbytes, ttl=args.ttl, compression=args.compression, policy="idle-only", name="http")
    server = make_server(cache, args.upstream, args.host, args.port)
    print(f"caching {args.upstream} on http://{args.host}:{server.server_address[1]}/ (stats: /_stats, /_metrics)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        cache.close()


if __name__ == "__main__":
    main()
