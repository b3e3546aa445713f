"""`flowforge data`: find (or download into the per-user cache) the named data sets."""

from __future__ import annotations

from flowforge.data.layouts import LAYOUTS


def run(args) -> int:
    from flowforge.data import find_dataset_dir

    for name in args.names:
        print(f"{name}: {find_dataset_dir(name, args.data_dir, download=not args.no_download)}")
    return 0


def add_parser(sub, common) -> None:
    p = sub.add_parser("data", help="find (or download into the per-user cache) the named data sets")
    p.add_argument("names", nargs="+", choices=sorted(LAYOUTS))
    p.add_argument("--data-dir", help="data root (beats FLOWFORGE_DATA)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading")
    p.set_defaults(func=run)
