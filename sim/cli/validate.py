"""``accsim validate``: predictions against the shipped set of published figures."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from sim.errors import AccsimError


def _progress(quiet: bool):
    if quiet:
        return None

    def report(done: int, total: int, what: str) -> None:
        if done < total:
            print(f"  [{done + 1}/{total}] {what}", file=sys.stderr, flush=True)
    return report


def cmd_validate(args: argparse.Namespace) -> int:
    from sim import validation
    only = [name.strip() for text in (args.only or []) for name in text.split(",") if name.strip()]
    groups = validation.load_groups(only or None)
    if args.list:
        for g in groups:
            print(f"{g.name:<16} {len(g.points):>3} points  {g.title}")
        return 0
    results = validation.run(groups, _progress(args.quiet or args.json))
    if args.out:
        from sim.reports.writer import write_json
        out = Path(args.out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AccsimError(f"--out {args.out}: cannot create directory ({exc.strerror})") from None
        write_json({"groups": [r.as_dict() for r in results]}, out / "validation.json")
    if args.markdown:
        command = "accsim validate --markdown docs/validation.md"
        target = Path(args.markdown)
        previous = target.read_text(encoding="utf-8") if target.is_file() else ""
        text = validation.render_markdown(results, command, validation.kept_section(previous))
        partial = target.with_name(target.name + ".partial")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, target)
    if args.json:
        print(json.dumps({"groups": [r.as_dict() for r in results]}, indent=2))
    else:
        print(validation.render_table(results))
    failed = [r.group.name for r in results if not r.passed]
    if failed and not args.json:
        print(f"outside tolerance: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def register(sub) -> None:
    from sim.validation import GROUP_MODULES
    p = sub.add_parser(
        "validate", help="compare predictions with published measurements",
        description="Run the shipped validation set: every published figure accsim was calibrated "
                    "to or is checked against, predicted versus published, with the signed error and "
                    "the mean absolute error per group. Exits 1 if a group is outside its tolerance.",
        epilog=f"Groups: {', '.join(GROUP_MODULES)}. Example: accsim validate --only collectives")
    p.add_argument("--only", action="append", metavar="GROUP",
                   help="run only these groups (comma-separated or repeated)")
    p.add_argument("--list", action="store_true", help="list the groups and their point counts")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p.add_argument("--out", metavar="DIR", help="also write DIR/validation.json")
    p.add_argument("--markdown", metavar="FILE", help="also write the report as Markdown (docs/validation.md)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_validate)
