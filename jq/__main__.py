"""Command line.

``python -m jq report INFO.json OUT.html`` writes the HTML report of a saved
``QuantizationInfo`` (``info.save("info.json")``) and a markdown summary next to it (``OUT.md``);
see :func:`jq.report`.

``python -m jq warmup`` compiles jq's fixed set of default-mode weight search programs and the
statistics pass's histogram programs (both modes) into the persistent compilation cache (jq's
folder, or the user's ``JAX_COMPILATION_CACHE_DIR``), so that a later process's first call
loads them instead of compiling.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m jq", description="jq command line tools")
    sub = ap.add_subparsers(dest="command", required=True)
    rp = sub.add_parser(
        "report",
        help="HTML + markdown report of a saved QuantizationInfo",
        description="Write a self-contained HTML report (plots embedded) of a QuantizationInfo "
        "saved with info.save(path), and a markdown summary next to it.",
    )
    rp.add_argument("info", help="QuantizationInfo JSON (info.save(...))")
    rp.add_argument("out", help="HTML file to write; the markdown goes to OUT with .md")
    rp.add_argument("--title", default="jq quantization report", help="page title")
    wp = sub.add_parser(
        "warmup",
        help="compile jq's fixed search programs into the persistent cache",
        description="Compile every default-mode weight search program (method x tile shape, "
        "with and without the per-round error record) into the persistent compilation cache.",
    )
    wp.add_argument("--no-errors", action="store_true", help="skip the error-record programs")
    args = ap.parse_args(argv)
    if args.command == "warmup":
        return _warmup(with_errors=not args.no_errors)
    from ._src.report.report import report

    try:
        html_path, md_path = report(args.info, args.out, title=args.title)
    except (OSError, ValueError, TypeError) as e:
        print(f"python -m jq report: {e}", file=sys.stderr)
        return 1
    print(f"wrote {html_path} and {md_path}")
    return 0


def _warmup(*, with_errors: bool) -> int:
    import time

    from ._src.runtime.cache import ensure_compilation_cache
    from ._src.select import histogram_rows
    from ._src.select.tiled_weights import warmup

    t = time.perf_counter()
    n = warmup() + (warmup(keep_errors=True) if with_errors else 0)
    histogram_rows.warmup()
    folder = ensure_compilation_cache() or "no persistent cache (programs kept in memory only)"
    print(
        f"compiled {n} search programs and the statistics histogram programs in "
        f"{time.perf_counter() - t:.1f} s -> {folder}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
