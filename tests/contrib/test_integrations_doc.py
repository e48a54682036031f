"""The snippets of docs/INTEGRATIONS.md run as written (servers aside: the client snippets only
construct their clients, which connect on first use; test_near_cache.py runs them for real)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import prometheus_client
import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "INTEGRATIONS.md"


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)


def run(snippet: str) -> dict[str, Any]:
    scope: dict[str, Any] = {"__name__": "integrations_doc"}
    exec(compile(snippet, str(DOC), "exec"), scope)
    return scope


def test_every_snippet_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[int] = []
    monkeypatch.setattr(prometheus_client, "start_http_server", served.append)
    found = snippets()
    assert len(found) == 5
    django_settings, flask_app, valkey_client, redis_client, prometheus = map(run, found)

    from zspool.contrib.django import ZspoolCache as DjangoCache

    params = django_settings["CACHES"]["default"]
    backend = DjangoCache(params["LOCATION"], params)
    backend.set("k", {"v": 1})
    assert backend.get("k") == {"v": 1} and backend._cache.compression == "zstd"
    backend._cache.close()

    client = flask_app["app"].test_client()
    assert client.get("/report").data == b"expensive"
    with flask_app["app"].app_context():
        flask_app["cache"].cache.close()

    assert valkey_client["r"].connection_pool.connection_kwargs["client_cache"] is not None
    assert redis_client["r"].connection_pool.cache is not None
    valkey_client["r"].connection_pool.connection_kwargs["client_cache"].close()
    redis_client["r"].connection_pool.cache.close()

    assert served == [9100]
    cache = prometheus["cache"]
    assert (
        prometheus_client.REGISTRY.get_sample_value("zspool_cache_entries", {"cache": "http"}) == 0
    )
    for collector in list(prometheus_client.REGISTRY._collector_to_names):
        if type(collector).__name__ == "ZspoolCollector":
            prometheus_client.REGISTRY.unregister(collector)
    cache.close()
