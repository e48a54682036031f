"""The ``zspool`` command: the class table, the demo, and the demo under a policy."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from zspool.cli import main


def test_classes_prints_the_merged_class_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classes"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("159 size classes for max_pages_per_zspage=8: 119 up to 4096 bytes (the kernel's), 40 above")
    assert re.search(r"^\s+254\s+4096\s+1\s+1\s+0$", out, re.M), "the 4096-byte class: one page, one object"
    # Above a page: a page-sized value plus a few bytes packs 15 to 16 pages; the last class
    # is two pages, one object.
    assert re.search(r"^\s+271\s+4368\s+16\s+15\s+16$", out, re.M), "the class of 4097..4368 bytes"
    assert re.search(r"^\s+510\s+8192\s+2\s+1\s+0$", out, re.M), "the 8192-byte class"


def test_demo_compacts_exactly_what_was_predicted_and_loses_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--objects", "20000"]) == 0
    out = capsys.readouterr().out
    freed = re.search(r"pages freed\s+([\d,]+) \(can_compact predicted ([\d,]+)\)", out)
    assert freed and freed.group(1) == freed.group(2) and freed.group(1) != "0"
    assert "(6,000 objects, 0 corrupted)" in out
    assert "RSS" in out and "returned to the OS" in out


def test_demo_under_a_policy_shows_when_it_compacted(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--objects", "20000", "--policy", "always", "--busy-s", "0.3", "--idle-s", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"t=\s*[\d.]+ s\s+tick\s+pressure [\d.]+ \(\w+\)\s+freed [\d,]+ pages", out)
    assert "policy 'always':" in out and "0 corrupted" in out


def test_demo_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    png = tmp_path / "fullness.png"
    assert main(["demo", "--objects", "5000", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_are_refused_by_name() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "zspool", "demo", "--free-fraction", "1.5"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "1.5 is not a fraction" in result.stderr
