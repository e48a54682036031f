"""zspool.pressure: parsers on real-format files, the level rule, and the live kernel.

Fixtures under tests/data/pressure/ are copies of real kernel output (this CI
host's /proc/meminfo, /proc/self/cgroup, /proc/self/mountinfo and /proc/self/status,
plus systemd-host and Docker variants). Live tests skip, with the reason, where the
kernel does not offer the interface.
"""

from __future__ import annotations

import ast
import dataclasses
import errno
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from zspool import pressure
from zspool.pressure import (
    CgroupDir,
    CgroupMemory,
    CgroupMemorySource,
    MemInfo,
    MemInfoSource,
    PressureMonitor,
    PsiSource,
    PsiStats,
    PsiTrigger,
    PsiTriggerSpec,
    RssSource,
    RssUsage,
    Unavailable,
    compute_level,
    find_cgroup_dir,
    parse_meminfo,
    parse_mountinfo,
    parse_proc_cgroup,
    parse_psi,
    parse_statm,
    parse_status_vmrss,
    read_cgroup_memory,
    read_meminfo,
    read_psi,
    register_psi_trigger,
)

DATA = Path(__file__).parent / "data" / "pressure"
LIVE_PSI = Path("/proc/pressure/memory")
GIB = 1 << 30


def fixture_text(name: str) -> str:
    return (DATA / name).read_text()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def psi_text(some_avg10: float) -> str:
    return (f"some avg10={some_avg10:.2f} avg60=0.00 avg300=0.00 total=12345\n"
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")


def meminfo_text(total_kb: int, available_kb: int) -> str:
    return (f"MemTotal:       {total_kb} kB\nMemFree:        {available_kb // 2} kB\n"
            f"MemAvailable:   {available_kb} kB\nHugePages_Total:       0\n")


# ------------------------------------------------------------------ the module

def test_imports_only_the_standard_library() -> None:
    imported = set()
    for path in Path(pressure.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"relative import in {path.name} (e.g. of zspool._core)"
                imported.add(node.module or "")
    # Its own modules, and the standard library: nothing else of zspool's.
    not_stdlib = {name for name in imported if not name.startswith("zspool.pressure")}
    assert {name.split(".")[0] for name in not_stdlib} <= set(sys.stdlib_module_names)


def test_all_names_exist() -> None:
    missing = [name for name in pressure.__all__ if not hasattr(pressure, name)]
    assert not missing


# ------------------------------------------------------------------------ PSI

def test_parse_psi_some_and_full() -> None:
    stats = parse_psi(fixture_text("psi_memory_some_full.txt"), "memory")
    assert stats.some == pressure.PsiStall(12.34, 5.67, 1.23, 98765432)
    assert stats.full == pressure.PsiStall(3.21, 1.10, 0.25, 12345678)
    assert stats.source == "memory"


def test_parse_psi_without_full_line() -> None:
    stats = parse_psi(fixture_text("psi_cpu_some_only.txt"))
    assert stats.some.avg10 == 2.07 and stats.some.total_us == 3061194
    assert stats.full is None


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=x avg60=0.00 avg300=0.00 total=0\n",
         2, "avg10 is not a percentage"),
        ("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nbogus avg10=0.00\n", 2, "'some' or 'full'"),
        ("some avg10=0.00 avg60=0.00 avg300=0.00\n", 1, "missing total"),
        ("some avg10=0.00 avg60=0.00 avg300=0.00 total=-1\n", 1, "total"),
        ("some avg10=100.01 avg60=0.00 avg300=0.00 total=0\n", 1, "avg10 is not a percentage"),
        ("some avg10=0.00 avg60 avg300=0.00 total=0\n", 1, "key=value"),
        ("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
         "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", 2, "repeated"),
    ],
)
def test_malformed_psi_names_file_and_line(tmp_path: Path, text: str, line: int, problem: str) -> None:
    path = write(tmp_path / "memory.pressure", text)
    with pytest.raises(ValueError, match=problem) as info:
        read_psi(path)
    assert f"{path}:{line}:" in str(info.value)


@pytest.mark.parametrize("text", ["", "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"])
def test_psi_without_some_line_names_file(text: str) -> None:
    with pytest.raises(ValueError, match=r"^/x/memory\.pressure: no 'some' line"):
        parse_psi(text, "/x/memory.pressure")


def test_missing_psi_file_is_unavailable_not_an_error(tmp_path: Path) -> None:
    result = read_psi(tmp_path / "no-psi" / "memory")
    assert isinstance(result, Unavailable) and not result
    assert result.errno == errno.ENOENT
    assert "PSI unavailable" in str(result) and str(tmp_path) in str(result)


def test_live_proc_pressure_memory() -> None:
    if not LIVE_PSI.exists():
        pytest.skip("/proc/pressure/memory does not exist (kernel without CONFIG_PSI)")
    result = PsiSource().read()
    if isinstance(result, Unavailable):
        pytest.skip(f"PSI present but unreadable: {result}")
    assert 0.0 <= result.some.avg10 <= 100.0 and result.some.total_us >= 0
    if result.full is not None:
        assert result.full.avg10 <= 100.0


# --------------------------------------------------------------- PSI triggers

@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"window_us": 499_999}, "outside"),
        ({"window_us": 10_000_001, "stall_us": 100}, "outside"),
        ({"stall_us": 0}, "must be > 0"),
        ({"stall_us": 1_000_001, "window_us": 1_000_000}, "<= window_us=1000000"),
        ({"kind": "most"}, "'some' or 'full'"),
    ],
)
def test_trigger_spec_validation(kwargs: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        PsiTriggerSpec(**kwargs)


def test_trigger_spec_bounds_and_encoding() -> None:
    assert PsiTriggerSpec().encode() == b"some 150000 1000000\0"
    assert PsiTriggerSpec("full", 500_000, 500_000).encode() == b"full 500000 500000\0"
    assert PsiTriggerSpec("some", 10_000_000, 10_000_000).window_us == 10_000_000


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (PsiTriggerSpec("some", 150_000, 1_000_000), PsiTriggerSpec("some", 300_000, 2_000_000)),
        (PsiTriggerSpec("full", 100_000, 2_000_000), PsiTriggerSpec("full", 100_000, 2_000_000)),
        (PsiTriggerSpec("some", 300_000, 3_000_000), PsiTriggerSpec("some", 400_000, 4_000_000)),
        (PsiTriggerSpec("some", 500_000, 500_000), PsiTriggerSpec("some", 2_000_000, 2_000_000)),
        (PsiTriggerSpec("some", 900_000, 9_000_000), PsiTriggerSpec("some", 1_000_000, 10_000_000)),
    ],
)
def test_unprivileged_spec_rounds_window_to_2s_and_keeps_the_share(
    spec: PsiTriggerSpec, expected: PsiTriggerSpec
) -> None:
    assert spec.unprivileged() == expected


def test_trigger_on_missing_file_is_a_fallback_flag(tmp_path: Path) -> None:
    result = register_psi_trigger(tmp_path / "memory.pressure")
    assert isinstance(result, Unavailable) and not result
    assert result.errno == errno.ENOENT


def _live_trigger_or_skip(**kwargs: object) -> PsiTrigger:
    if not LIVE_PSI.exists():
        pytest.skip("/proc/pressure/memory does not exist (kernel without CONFIG_PSI)")
    result = register_psi_trigger(LIVE_PSI, **kwargs)  # type: ignore[arg-type]
    if isinstance(result, Unavailable):
        pytest.skip(f"kernel refused a PSI trigger here: {result}")
    return result


def test_live_trigger_registers_and_times_out() -> None:
    requested = PsiTriggerSpec()
    with _live_trigger_or_skip(spec=requested) as trigger:
        # Privileged: the 1 s window as asked; otherwise the 2 s fallback.
        assert trigger.spec in (requested, requested.unprivileged())
        assert trigger.fell_back == (trigger.spec != requested)
        assert trigger.fileno() >= 0
        started = time.monotonic()
        fired = trigger.wait(0.2)  # True only if the host is under real pressure
        assert isinstance(fired, bool)
        assert time.monotonic() - started < 1.0
    assert trigger.closed
    trigger.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        trigger.fileno()


def test_live_trigger_without_fallback_reports_refusal_cleanly() -> None:
    # 2 s windows are allowed unprivileged (Linux >= 6.4), so this registers as is
    # or is refused with an Unavailable; it never raises.
    spec = PsiTriggerSpec("full", 200_000, 2_000_000)
    with _live_trigger_or_skip(spec=spec, unprivileged_fallback=False) as trigger:
        assert trigger.spec == spec and not trigger.fell_back
        assert trigger.wait(0) in (True, False)


def test_poll_error_on_an_fd_without_trigger_is_not_pressure() -> None:
    # The kernel answers poll() on a pressure fd that has no trigger with
    # POLLPRI|POLLERR; wait() must call that "source gone", not "pressure".
    if not LIVE_PSI.exists():
        pytest.skip("/proc/pressure/memory does not exist (kernel without CONFIG_PSI)")
    try:
        fd = os.open(LIVE_PSI, os.O_RDWR | os.O_NONBLOCK)
    except OSError as exc:
        pytest.skip(f"cannot open {LIVE_PSI} read-write: {exc}")
    with PsiTrigger(fd, str(LIVE_PSI), PsiTriggerSpec(), PsiTriggerSpec()) as bare:
        with pytest.raises(OSError, match="source is gone") as info:
            bare.wait(0.2)
        assert info.value.errno == errno.ENODEV


def test_trigger_wait_times_out_and_an_unclosed_trigger_warns(tmp_path: Path) -> None:
    # A regular file never reports POLLPRI, so wait() runs to its timeout.
    fd = os.open(write(tmp_path / "plain", ""), os.O_RDWR)
    trigger = PsiTrigger(fd, "plain", PsiTriggerSpec(), PsiTriggerSpec())
    assert trigger.wait(0.05) is False and trigger.wait(0) is False
    with pytest.warns(ResourceWarning, match="unclosed PsiTrigger"):
        del trigger
    with pytest.raises(OSError) as info:
        os.fstat(fd)
    assert info.value.errno == errno.EBADF


# ---------------------------------------------------------- cgroup discovery

def test_parse_proc_cgroup_hybrid_v1() -> None:
    membership = parse_proc_cgroup(fixture_text("proc_self_cgroup_v1.txt"))
    assert membership.unified == "/"
    assert membership.v1["memory"] == "/process_api/3f2a9c1e"
    assert membership.v1["name=systemd"] == "/"


def test_parse_proc_cgroup_v1_comma_controllers() -> None:
    membership = parse_proc_cgroup(fixture_text("proc_self_cgroup_v1_docker.txt"))
    assert membership.unified is None
    assert membership.v1["cpu"] == membership.v1["cpuacct"] == "/docker/4b1f0c9e2d"


def test_parse_proc_cgroup_v2() -> None:
    membership = parse_proc_cgroup(fixture_text("proc_self_cgroup_v2.txt"))
    assert membership.unified == "/system.slice/zspool-demo.service"
    assert dict(membership.v1) == {}


def test_malformed_proc_cgroup_names_file_and_line() -> None:
    with pytest.raises(ValueError, match=r"^/proc/self/cgroup:2: expected 'ID:controllers:/path'"):
        parse_proc_cgroup("0::/\nmemory/oops\n")


def test_parse_mountinfo_v2_and_v1() -> None:
    v2 = [m for m in parse_mountinfo(fixture_text("mountinfo_v2.txt")) if m.fstype == "cgroup2"]
    assert [(m.root, m.mount_point) for m in v2] == [("/", "/sys/fs/cgroup")]
    assert "nsdelegate" in v2[0].super_options

    v1 = parse_mountinfo(fixture_text("mountinfo_v1_docker.txt"))
    memory = [m for m in v1 if m.fstype == "cgroup" and "memory" in m.super_options]
    assert [(m.root, m.mount_point) for m in memory] == [("/docker/4b1f0c9e2d", "/sys/fs/cgroup/memory")]


def test_parse_mountinfo_unescapes_and_rejects_garbage() -> None:
    (mount,) = parse_mountinfo(r"40 31 0:37 / /mnt/my\040cgroups rw - cgroup2 cgroup2 rw" "\n")
    assert mount.mount_point == "/mnt/my cgroups"
    with pytest.raises(ValueError, match=r"^/tmp/mi:1: no ' - ' separator"):
        parse_mountinfo("40 31 0:37 / /mnt rw cgroup2 cgroup2 rw\n", "/tmp/mi")


def _fake_cgroup_host(tmp_path: Path, cgroup_name: str, mountinfo_name: str, cgroup_dirs: dict) -> tuple:
    """Real /proc/self/cgroup and mountinfo text, with mounts moved under tmp_path."""
    root = tmp_path / "root"
    mountinfo = fixture_text(mountinfo_name).replace(" /sys/fs/cgroup", f" {root}/sys/fs/cgroup")
    for relative, source_dir in cgroup_dirs.items():
        shutil.copytree(DATA / source_dir, root / relative)
    return (write(tmp_path / "cgroup", fixture_text(cgroup_name)),
            write(tmp_path / "mountinfo", mountinfo))


def test_find_cgroup_dir_v2(tmp_path: Path) -> None:
    files = _fake_cgroup_host(tmp_path, "proc_self_cgroup_v2.txt", "mountinfo_v2.txt",
                              {"sys/fs/cgroup/system.slice/zspool-demo.service": "cgroup_v2"})
    found = find_cgroup_dir(*files)
    assert found == CgroupDir(f"{tmp_path}/root/sys/fs/cgroup/system.slice/zspool-demo.service", 2)


def test_find_cgroup_dir_hybrid_prefers_v1_memory_over_empty_unified(tmp_path: Path) -> None:
    files = _fake_cgroup_host(tmp_path, "proc_self_cgroup_v1.txt", "mountinfo_v1.txt",
                              {"sys/fs/cgroup/memory/process_api/3f2a9c1e": "cgroup_v1"})
    (tmp_path / "root/sys/fs/cgroup/unified").mkdir()  # unified root: no memory.current
    found = find_cgroup_dir(*files)
    assert found == CgroupDir(f"{tmp_path}/root/sys/fs/cgroup/memory/process_api/3f2a9c1e", 1)


def test_find_cgroup_dir_v1_container_mount_root(tmp_path: Path) -> None:
    files = _fake_cgroup_host(tmp_path, "proc_self_cgroup_v1_docker.txt", "mountinfo_v1_docker.txt",
                              {"sys/fs/cgroup/memory": "cgroup_v1"})
    assert find_cgroup_dir(*files) == CgroupDir(f"{tmp_path}/root/sys/fs/cgroup/memory", 1)


def test_find_cgroup_dir_unavailable(tmp_path: Path) -> None:
    files = _fake_cgroup_host(tmp_path, "proc_self_cgroup_v2.txt", "mountinfo_v2.txt", {})
    assert isinstance(find_cgroup_dir(*files), Unavailable)
    missing = find_cgroup_dir(tmp_path / "nope", files[1])
    assert isinstance(missing, Unavailable) and missing.errno == errno.ENOENT


def test_live_cgroup_detection_does_not_crash() -> None:
    source = CgroupMemorySource()
    where = source.locate()
    assert isinstance(where, (CgroupDir, Unavailable))
    result = source.read()
    assert isinstance(result, (CgroupMemory, Unavailable))
    if isinstance(result, CgroupMemory):
        assert result.usage_bytes > 0


# ------------------------------------------------------------- cgroup memory

def test_cgroup_v2_with_max_limit_and_unlimited_high() -> None:
    memory = read_cgroup_memory(DATA / "cgroup_v2")
    assert isinstance(memory, CgroupMemory)
    assert (memory.version, memory.usage_bytes, memory.limit_bytes, memory.high_bytes) == (
        2, 734003200, GIB, None)
    assert memory.usage_fraction == pytest.approx(734003200 / GIB)
    assert memory.psi is not None and memory.psi.some.avg10 == 0.52


def test_cgroup_v2_high_below_max_is_the_effective_limit(tmp_path: Path) -> None:
    shutil.copytree(DATA / "cgroup_v2", tmp_path / "cg")
    write(tmp_path / "cg/memory.high", "805306368\n")
    memory = read_cgroup_memory(tmp_path / "cg")
    assert isinstance(memory, CgroupMemory)
    assert memory.effective_limit_bytes == 805306368
    assert memory.usage_fraction == pytest.approx(734003200 / 805306368)


def test_cgroup_v2_unlimited(tmp_path: Path) -> None:
    shutil.copytree(DATA / "cgroup_v2", tmp_path / "cg")
    write(tmp_path / "cg/memory.max", "max\n")
    (tmp_path / "cg/memory.pressure").unlink()
    memory = read_cgroup_memory(tmp_path / "cg", 2)
    assert isinstance(memory, CgroupMemory)
    assert memory.limit_bytes is None and memory.usage_fraction is None and memory.psi is None


def test_cgroup_v1_huge_value_means_unlimited(tmp_path: Path) -> None:
    memory = read_cgroup_memory(DATA / "cgroup_v1")
    assert isinstance(memory, CgroupMemory)
    assert (memory.version, memory.usage_bytes, memory.limit_bytes) == (1, 19427328, None)
    assert memory.usage_fraction is None

    shutil.copytree(DATA / "cgroup_v1", tmp_path / "cg")
    write(tmp_path / "cg/memory.limit_in_bytes", "77709312\n")
    limited = read_cgroup_memory(tmp_path / "cg")
    assert isinstance(limited, CgroupMemory)
    assert limited.usage_fraction == pytest.approx(0.25)


def test_cgroup_malformed_value_names_file(tmp_path: Path) -> None:
    shutil.copytree(DATA / "cgroup_v2", tmp_path / "cg")
    bad = write(tmp_path / "cg/memory.max", "lots\n")
    with pytest.raises(ValueError, match="expected a byte count") as info:
        read_cgroup_memory(tmp_path / "cg")
    assert str(bad) in str(info.value)


def test_cgroup_directory_without_memory_files_is_unavailable(tmp_path: Path) -> None:
    assert isinstance(read_cgroup_memory(tmp_path), Unavailable)
    assert isinstance(CgroupMemorySource(tmp_path / "gone").read(), Unavailable)


# ------------------------------------------------------------------- meminfo

def test_parse_real_meminfo() -> None:
    info = read_meminfo(DATA / "meminfo.txt")
    assert isinstance(info, MemInfo)
    assert info.total_bytes == 24684084 * 1024
    assert info.available_bytes == 24115924 * 1024
    assert info.available_fraction == pytest.approx(24115924 / 24684084)
    assert info.fields["Active(anon)"] == 1576 * 1024
    assert info.fields["HugePages_Total"] == 0  # a count, not kB
    assert info.fields["Hugepagesize"] == 2 * 1024 * 1024


def test_malformed_meminfo_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "meminfo", "MemTotal:  100 kB\nMemFree   50 kB\n")
    with pytest.raises(ValueError, match=rf"^{path}:2: expected 'Key: value \[kB\]'"):
        read_meminfo(path)
    with pytest.raises(ValueError, match="repeated key MemTotal"):
        parse_meminfo("MemTotal: 1 kB\nMemTotal: 2 kB\n")


def test_meminfo_without_memavailable_is_unavailable(tmp_path: Path) -> None:
    old_kernel = write(tmp_path / "meminfo", "MemTotal:  100 kB\nMemFree:  50 kB\n")
    assert "3.14" in str(read_meminfo(old_kernel))
    with pytest.raises(ValueError, match="no MemTotal"):
        read_meminfo(write(tmp_path / "m2", "MemFree:  50 kB\n"))


def test_live_meminfo() -> None:
    if not os.path.exists("/proc/meminfo"):
        pytest.skip("no /proc/meminfo")
    info = MemInfoSource().read()
    if isinstance(info, Unavailable):
        pytest.skip(str(info))
    assert 0 < info.available_bytes <= info.total_bytes
    assert 0.0 < info.available_fraction <= 1.0


# ------------------------------------------------------------------------ RSS

def test_rss_parsers_on_real_files() -> None:
    assert parse_statm(fixture_text("statm.txt"), 4096) == 439 * 4096
    assert parse_status_vmrss(fixture_text("status.txt")) == 1708 * 1024
    with pytest.raises(ValueError, match=r"^/x/statm:1:"):
        parse_statm("765\n", 4096, "/x/statm")
    with pytest.raises(ValueError, match=r"^/x/status: no VmRSS"):
        parse_status_vmrss("Name:\tkthreadd\n", "/x/status")


def test_rss_source_falls_back_to_status(tmp_path: Path) -> None:
    source = RssSource(4 * 1708 * 1024, statm=tmp_path / "none", status=DATA / "status.txt")
    usage = source.read()
    assert usage == RssUsage(1708 * 1024, 4 * 1708 * 1024)
    assert isinstance(usage, RssUsage) and usage.fraction == 0.25
    with pytest.raises(ValueError, match="budget_bytes must be > 0"):
        RssSource(0)


def test_live_rss() -> None:
    usage = RssSource(GIB).read()
    assert isinstance(usage, RssUsage)
    assert 0 < usage.rss_bytes < 64 * GIB


# ------------------------------------------------------------- level and monitor

def monitor_on(tmp_path: Path, *, psi_avg10: float = 0.0, total_kb: int = 1_000_000,
               available_kb: int = 800_000, usage: int = 100, limit: int = 1000,
               rss_pages: int = 10, budget: int = 4096 * 100, **tuning: float) -> PressureMonitor:
    """A monitor over synthetic, real-format files; the defaults are all quiet."""
    cg = tmp_path / "cg"
    write(cg / "memory.current", f"{usage}\n")
    write(cg / "memory.max", f"{limit}\n")
    write(cg / "memory.high", "max\n")
    return PressureMonitor(
        psi=PsiSource(write(tmp_path / "psi", psi_text(psi_avg10))),
        cgroup=CgroupMemorySource(cg),
        meminfo=MemInfoSource(write(tmp_path / "meminfo", meminfo_text(total_kb, available_kb))),
        rss=RssSource(budget, statm=write(tmp_path / "statm", f"500 {rss_pages} 3 1 0 4 0\n"),
                      page_size=4096),
        **tuning,
    )


def test_level_quiet_host_reads_low(tmp_path: Path) -> None:
    reading = monitor_on(tmp_path).read()
    assert reading.components == {"psi": 0.0, "cgroup": 0.1, "meminfo": 0.0, "rss": 0.1}
    assert reading.level == 0.1 and reading.reason == "cgroup"  # first of a tie
    assert reading.mem_available_fraction == 0.8 and reading.cgroup_fraction == 0.1
    assert reading.rss_fraction == 0.1 and reading.psi_some_avg10 == 0.0
    assert reading.unavailable == ()


@pytest.mark.parametrize(
    ("setup", "level", "reason"),
    [
        ({"psi_avg10": 5.0}, 0.5, "psi"),  # 5 % of 10 % full scale
        ({"psi_avg10": 5.0, "psi_full_scale_percent": 5.0}, 1.0, "psi"),
        ({"psi_avg10": 42.0}, 1.0, "psi"),  # clamped
        ({"usage": 950}, 0.95, "cgroup"),
        ({"usage": 1500}, 1.0, "cgroup"),  # over the limit, clamped
        ({"available_kb": 250_000}, 0.5, "meminfo"),  # 25 % available
        ({"available_kb": 50_000}, 0.9, "meminfo"),
        ({"available_kb": 500_000}, 0.1, "cgroup"),  # 50 % available: still healthy
        ({"available_kb": 250_000, "mem_available_healthy": 0.25}, 0.1, "cgroup"),
        ({"rss_pages": 90}, 0.9, "rss"),
        ({"rss_pages": 300}, 1.0, "rss"),
    ],
)
def test_level_above_thresholds(tmp_path: Path, setup: dict, level: float, reason: str) -> None:
    reading = monitor_on(tmp_path, **setup).read()
    assert reading.level == pytest.approx(level)
    assert reading.reason == reason


def test_cgroup_psi_counts_as_its_own_signal(tmp_path: Path) -> None:
    monitor = monitor_on(tmp_path)
    write(tmp_path / "cg/memory.pressure", psi_text(8.0))
    reading = monitor.read()
    assert reading.reason == "cgroup_psi" and reading.level == pytest.approx(0.8)


def test_unavailable_signals_are_listed_not_raised(tmp_path: Path) -> None:
    monitor = PressureMonitor(psi=PsiSource(tmp_path / "no-psi"),
                              cgroup=CgroupMemorySource(tmp_path / "no-cg"),
                              meminfo=MemInfoSource(tmp_path / "no-meminfo"))
    reading = monitor.read()
    assert (reading.level, reading.reason, reading.components) == (0.0, "none", {})
    assert reading.psi is None and reading.cgroup is None and reading.meminfo is None
    assert len(reading.unavailable) == 3 and not any(reading.unavailable)


def test_nothing_configured_reads_zero_and_readings_are_frozen() -> None:
    reading = PressureMonitor(psi=None, cgroup=None, meminfo=None).read()
    assert (reading.level, reading.reason) == (0.0, "none")
    assert reading.timestamp <= time.monotonic()
    with pytest.raises(dataclasses.FrozenInstanceError):
        reading.level = 1.0  # type: ignore[misc]


def test_malformed_file_raises_from_monitor(tmp_path: Path) -> None:
    bad = write(tmp_path / "psi", "some avg10=??\n")
    with pytest.raises(ValueError, match=str(bad)):
        PressureMonitor(psi=PsiSource(bad), cgroup=None, meminfo=None).read()


@pytest.mark.parametrize("tuning", [{"psi_full_scale_percent": 0.0},
                                    {"mem_available_healthy": 0.0},
                                    {"mem_available_healthy": 1.5}])
def test_tuning_is_validated(tuning: dict) -> None:
    with pytest.raises(ValueError, match="must be"):
        PressureMonitor(psi=None, cgroup=None, meminfo=None, **tuning)
    with pytest.raises(ValueError, match="must be"):
        compute_level(**tuning)


def test_live_monitor_reads_a_level() -> None:
    reading = PressureMonitor(rss=RssSource(64 * GIB)).read()
    assert 0.0 <= reading.level <= 1.0
    assert reading.reason in ("none", "psi", "cgroup_psi", "cgroup", "meminfo", "rss")
    assert isinstance(reading.psi, (PsiStats, type(None)))
