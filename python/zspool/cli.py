"""The ``zspool`` command: ``zspool demo`` and ``zspool classes``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _classes(args: argparse.Namespace) -> int:
    from zspool import MAX_CLASS_SIZE, PAGE_SIZE, Pool
    from zspool.demo import format_class_table

    with Pool(max_pages_per_zspage=args.max_pages_per_zspage) as pool:
        rows = pool.class_stats()
        above = sum(1 for row in rows if row.size > PAGE_SIZE)
        print(
            f"{len(rows)} size classes for max_pages_per_zspage={args.max_pages_per_zspage}: "
            f"{len(rows) - above} up to {PAGE_SIZE} bytes (the kernel's), {above} above, up to "
            f"{MAX_CLASS_SIZE} (chains of up to 16 pages); larger objects take whole pages of their own"
        )
        print(f"{'class':>5} {'size':>5} {'pages/zspage':>12} {'objs/zspage':>11} {'tail waste':>10}")
        for row in rows:
            waste = row.pages_per_zspage * PAGE_SIZE - row.objs_per_zspage * row.size
            print(f"{row.index:>5} {row.size:>5} {row.pages_per_zspage:>12} {row.objs_per_zspage:>11} {waste:>10}")
        if args.fullness:
            print(format_class_table(rows, only_used=False))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from zspool.demo import DemoOptions, run_demo

    if args.dictionary:
        from zspool.demo_dictionary import run_dictionary_demo

        return run_dictionary_demo(args.records, args.busy_s, max(args.idle_s, 10.0), sys.stdout)

    return run_demo(
        DemoOptions(
            objects=args.objects,
            free_fraction=args.free_fraction,
            seed=args.seed,
            max_pages_per_zspage=args.max_pages_per_zspage,
            plot=args.plot,
            policy=args.policy,
            policy_options=tuple(_options(args.policy_option)),
            busy_s=args.busy_s,
            idle_s=args.idle_s,
            rss_budget=None if args.rss_budget_mib is None else int(args.rss_budget_mib * 2**20),
        )
    )


def _options(pairs: list[str]) -> list[tuple[str, object]]:
    """``KEY=VALUE`` strings to keyword options; values parse as int, float or str."""
    options: list[tuple[str, object]] = []
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise SystemExit(f"--policy-option takes KEY=VALUE, not {pair!r}")
        value: object = text
        for kind in (int, float):
            try:
                value = kind(text)
                break
            except ValueError:
                continue
        options.append((key, value))
    return options


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not a fraction between 0 and 1")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zspool", description="A compacting memory pool after Linux's zsmalloc.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="fragment a pool like a cache does, then compact it")
    demo.add_argument("--objects", type=_positive, default=400_000, help="values to store (default 400000)")
    demo.add_argument("--free-fraction", type=_fraction, default=0.7, help="fraction to free at random (0.7)")
    demo.add_argument("--seed", type=int, default=2015)
    demo.add_argument("--max-pages-per-zspage", type=int, default=8, choices=range(1, 17), metavar="1..16")
    demo.add_argument("--plot", metavar="FILE.png", help="draw fullness before/after (needs matplotlib)")
    demo.add_argument("--policy", metavar="NAME", help="let a shrinker policy and the reclaimer decide when to compact")
    demo.add_argument(
        "--policy-option", metavar="KEY=VALUE", action="append", default=[], help="an option for the policy"
    )
    demo.add_argument("--busy-s", type=float, default=1.5, help="with --policy: seconds of traffic (1.5)")
    demo.add_argument("--idle-s", type=float, default=3.0, help="with --policy: seconds of quiet at most (3)")
    demo.add_argument(
        "--rss-budget-mib", type=float, help="with --policy: RSS budget the pressure level is measured against"
    )
    demo.add_argument(
        "--dictionary",
        action="store_true",
        help="a zstd cache of small records trains a dictionary; idle-only recompresses with it",
    )
    demo.add_argument("--records", type=_positive, default=100_000, help="with --dictionary: records (100000)")
    demo.set_defaults(run=_demo)

    classes = commands.add_parser("classes", help="print the size-class table")
    classes.add_argument("--max-pages-per-zspage", type=int, default=8, choices=range(1, 17), metavar="1..16")
    classes.add_argument("--fullness", action="store_true", help="also print the (empty) fullness table")
    classes.set_defaults(run=_classes)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
