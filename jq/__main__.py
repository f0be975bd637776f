"""Command line: ``python -m jq report INFO.json OUT.html``.

Writes the HTML report of a saved ``QuantizationInfo`` (``info.save("info.json")``) and a
markdown summary next to it (``OUT.md``); see :func:`jq.report`.
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
    args = ap.parse_args(argv)
    from ._src.report.report import report

    try:
        html_path, md_path = report(args.info, args.out, title=args.title)
    except (OSError, ValueError, TypeError) as e:
        print(f"python -m jq report: {e}", file=sys.stderr)
        return 1
    print(f"wrote {html_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
