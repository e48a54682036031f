"""The example HTTP cache service (examples/cache_service.py), over real sockets on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import zspool

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "cache_service.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cache_service", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Upstream(BaseHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        Upstream.requests.append(self.path)
        if self.path.startswith("/missing"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"path": self.path, "filler": "x" * 500}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def service() -> Iterator[tuple[str, zspool.Cache]]:
    Upstream.requests = []
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    serve(upstream)
    example = load_example()
    cache = zspool.Cache(1 << 20, compression="lz4", ttl=60, policy="idle-only", name="http")
    server = example.make_server(cache, f"http://127.0.0.1:{upstream.server_address[1]}")
    serve(server)
    yield f"http://127.0.0.1:{server.server_address[1]}", cache
    server.shutdown()
    server.server_close()
    upstream.shutdown()
    upstream.server_close()
    cache.close()


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_hits_misses_and_stats(service: tuple[str, zspool.Cache]) -> None:
    base, cache = service
    status, headers, body = get(base + "/item/1")
    assert status == 200 and headers["X-Cache"] == "MISS"
    assert json.loads(body)["path"] == "/item/1"
    for _ in range(3):
        status, headers, again = get(base + "/item/1")
        assert status == 200 and headers["X-Cache"] == "HIT" and again == body
        assert headers["Content-Type"] == "application/json"
    get(base + "/item/2")
    status, headers, _ = get(base + "/missing/1")
    assert status == 404
    assert Upstream.requests == ["/item/1", "/item/2", "/missing/1"], "hits never reach the upstream"

    status, headers, body = get(base + "/_stats")
    stats = json.loads(body)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert (stats["hits"], stats["misses"], stats["entries"]) == (3, 3, 2)
    assert stats["compression_ratio"] > 1.0, "the JSON bodies compress"
    assert stats["pool"]["objects"] == 2

    status, headers, body = get(base + "/_metrics")
    text = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert "# TYPE zspool_cache_hits_total counter" in text
    assert "zspool_cache_hits_total 3\n" in text
    assert "zspool_cache_misses_total 3\n" in text
    assert "zspool_cache_entries 2\n" in text
    assert cache.stats().hits == 3


def test_concurrent_clients(service: tuple[str, zspool.Cache]) -> None:
    base, _ = service
    results: list[int] = []

    def client(n: int) -> None:
        for i in range(10):
            status, _, body = get(f"{base}/item/{(n + i) % 5}")
            results.append(status)
            assert json.loads(body)["path"] == f"/item/{(n + i) % 5}"

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 60
    stats = json.loads(get(base + "/_stats")[2])
    assert stats["hits"] + stats["misses"] == 60
    assert stats["entries"] == 5
