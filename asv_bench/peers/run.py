"""zspool side by side with Redis, memcached, a dict and cachetools, on one workload.

    python asv_bench/peers/run.py            # full run: N = 1,000,000 (the report says how long it took)
    python asv_bench/peers/run.py --smoke    # N = 200,000, shorter waits
    python asv_bench/peers/run.py --quick --out DIR   # N = 5,000, no waits: checks the harness (make test)

Each system runs in its own process, one after another: the runner starts a child
(``run.py --child NAME``) that drives the workload in ``drive.py`` against that system and
writes its raw figures as JSON. A system that can't run here (server binary or Python
package missing) is reported as skipped, with the reason; a child that fails, or a system
that returns a value it was not given, makes the run exit with status 1. Redis and memcached come from
Debian: ``apt-get update && apt-get install -y redis-server memcached``; the harness starts
them itself on 127.0.0.1 on a free port and stops them by PID.

Writes ``peers-<label>.json``, ``.md`` (the table) and ``.png`` (RSS over the phases) to
``--out`` (default ``asv_bench/peer-results/``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from report import write_report  # noqa: E402
from systems import SYSTEMS  # noqa: E402


def child(name: str, args: argparse.Namespace) -> int:
    from drive import Config, run

    cfg = Config(n=args.n)
    if args.smoke:
        cfg.decay_wait_s, cfg.idle_probe_s, cfg.reclaim_timeout_s = 5.0, 3.0, 60.0
    if name == "memcached":  # it moves about one page per 1-10 s: judge stability over 30 s
        cfg.stable_window_s = 15.0 if args.smoke else 30.0
    if args.quick:  # every phase once, no waiting for RSS to settle: the figures mean nothing
        cfg.settle_s, cfg.decay_wait_s, cfg.idle_probe_s = 0.05, 0.1, 0.2
        cfg.reclaim_timeout_s, cfg.stable_window_s = 5.0, 0.2
    system = SYSTEMS[name](0, 0)
    Path(args.json_out).write_text(json.dumps(run(system, cfg)))
    return 0


def machine() -> dict[str, str]:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "ram": f"{mem_kib / 2**20:.0f} GiB",
        "kernel": platform.release(),
        "os": " ".join(platform.freedesktop_os_release().get(k, "") for k in ("NAME", "VERSION_ID")),
        "python": platform.python_version(),
        "glibc": " ".join(platform.libc_ver()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="N = 200,000 and shorter waits")
    parser.add_argument("--quick", action="store_true", help="N = 5,000 and no waits: a check of the harness")
    parser.add_argument("--n", type=int, help="values in the fill (default 1,000,000; 200,000 with --smoke)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, from: " + ", ".join(SYSTEMS))
    parser.add_argument("--out", default=str(HERE.parent / "peer-results"))
    parser.add_argument("--label", help="file name part (default: full or smoke)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.n is None:
        args.n = 5_000 if args.quick else 200_000 if args.smoke else 1_000_000
    if args.child:
        return child(args.child, args)

    label = args.label or ("quick" if args.quick else "smoke" if args.smoke else "full")
    mode = ["--quick"] if args.quick else ["--smoke"] if args.smoke else []
    failed = 0
    results: list[dict[str, Any]] = []
    started = time.time()
    for name in args.systems.split(","):
        cls = SYSTEMS[name]
        why = cls(0, 0).unavailable()
        if why:
            print(f"== {cls.name}: skipped ({why})", flush=True)
            results.append({"system": cls.name, "skipped": why})
            continue
        print(f"== {cls.name}: running (N = {args.n:,})", flush=True)
        with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
            argv = [sys.executable, __file__, "--child", name, "--n", str(args.n), "--json-out", tmp.name]
            t0 = time.time()
            proc = subprocess.run(argv + mode)
            if proc.returncode != 0:
                failed += 1
                print(f"   failed (exit {proc.returncode})", flush=True)
                results.append({"system": cls.name, "skipped": f"harness child failed with exit {proc.returncode}"})
                continue
            result = json.loads(Path(tmp.name).read_text())
            result["wall_s"] = time.time() - t0
            results.append(result)
            print(f"   done in {result['wall_s']:.0f} s", flush=True)
            if result["verified"] != result["verify_total"]:
                failed += 1
                print(f"   only {result['verified']:,} of {result['verify_total']:,} values verified", flush=True)
    meta = {"machine": machine(), "n": args.n, "label": label, "total_s": time.time() - started,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"peers-{label}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    md = write_report(meta, results, out / f"peers-{label}.md", out / f"peers-{label}.png")
    print(md)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
