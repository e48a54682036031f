"""The gunicorn example (examples/shared_cache_gunicorn): 4 real gunicorn workers on
127.0.0.1 share one SharedCache; a value set through one worker is read through another."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from shared_cache_support import shm_file

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "shared_cache_gunicorn"


@pytest.fixture
def shm_path() -> Iterator[str]:
    yield from shm_file()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture
def server(shm_path: str) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "ZSPOOL_EXAMPLE_CACHE": shm_path}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--preload", "--workers", "4", "--bind", f"127.0.0.1:{port}",
         "--chdir", str(EXAMPLE), "app:app"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"gunicorn exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            try:
                request(base + "/stats")
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not answer within 60 s"
                time.sleep(0.1)
        yield base
    finally:
        os.kill(proc.pid, signal.SIGTERM)  # the master stops its workers
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


def test_a_value_set_through_one_worker_is_read_through_another(server: str) -> None:
    status, stored = request(server + "/kv/greeting", "PUT", b"hello from one worker")
    assert status == 200 and stored["stored"] == len(b"hello from one worker")
    setter = stored["pid"]
    readers, reads = set(), 0
    deadline = time.monotonic() + 60
    while not readers - {setter}:
        assert time.monotonic() < deadline, f"only worker {setter} ever answered"
        status, got = request(server + "/kv/greeting")
        assert status == 200 and got["value"] == "hello from one worker"
        readers.add(got["pid"])
        reads += 1
    status, stats = request(server + "/stats")
    assert stats["stats"]["hits"] >= reads and stats["stats"]["sets"] >= 1  # every worker's, in the file
    status, gone = request(server + "/kv/greeting", "DELETE")
    assert gone["deleted"] is True
    assert request(server + "/kv/greeting")[0] == 404
