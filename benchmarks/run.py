"""The benchmark suite: python benchmarks/run.py [--quick] [--only NAME[,NAME]] [--profile] [--keep]

Starts every server itself on 127.0.0.1, measures each scenario beside its floor measured in the
same run, prints a table and writes benchmarks/results/<timestamp>.json. See docs/performance.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import scenarios  # noqa: E402
from benchmarks.harness import HERE, Row, Workspace  # noqa: E402


def _dashboard(run):
    from benchmarks import dashboard

    return dashboard.dashboard(run)


def _realistic(name):
    def scenario(run):
        from benchmarks import realistic

        return getattr(realistic, name)(run)
    return scenario


def _scaleout(run):
    from benchmarks import scaleout

    return scaleout.scaleout(run)


def _vsphere(run):
    from benchmarks import vsphere

    return vsphere.refill_through_vsphere(run)


def _libvirt(run):
    from benchmarks import libvirt

    return libvirt.fill_through_libvirt(run)


SCENARIOS = {
    "read": scenarios.read_routes,
    "checkout": scenarios.checkout,
    "cycles": scenarios.refill,
    "vsphere": _vsphere,
    "libvirt": _libvirt,
    "scale": scenarios.scale,
    "history": scenarios.history,
    "dashboard": _dashboard,
    "metrics": scenarios.metrics,
    "fill": _realistic("fill"),
    "realistic": _realistic("realistic"),
    "scaleout": _scaleout,
}


def _number(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "n/a"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    return f"{value:,}"


def table(rows: list) -> str:
    header = ("scenario", "metric", "measured", "floor", "ratio", "target", "result")
    lines = [header]
    for row in rows:
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
        result = "" if row.passed is None else ("PASS" if row.passed else "MISS")
        lines.append((row.scenario, row.metric, f"{_number(row.value)} {row.unit}".strip(),
                      _number(row.floor), ratio, row.target, result))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="vmpooler-py benchmarks against their floors (127.0.0.1 only)")
    parser.add_argument("--quick", action="store_true", help="smaller and shorter: under a minute")
    parser.add_argument("--only", help=f"comma-separated scenarios: {', '.join(SCENARIOS)}")
    parser.add_argument("--profile", action="store_true", help="sample the server with py-spy while measuring")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (databases, server logs)")
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)} (known: {', '.join(SCENARIOS)})")
    workspace = Workspace(tempfile.mkdtemp(prefix="vmpooler-bench-"))
    run = scenarios.Run(workspace, quick=args.quick, profile=args.profile)
    rows, errors, timings, began = [], {}, {}, time.monotonic()
    try:
        for name in chosen:
            print(f"[{time.monotonic() - began:5.1f}s] {name} ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                rows += SCENARIOS[name](run)
            except Exception as error:  # one broken scenario does not hide the others' figures
                errors[name] = f"{type(error).__name__}: {error}"
                traceback.print_exc()
                rows.append(Row(name, "did not complete", float("nan"), "", note=errors[name][:300]))
            timings[name] = round(time.monotonic() - started, 1)
    finally:
        if args.keep:
            print(f"scratch directory kept: {workspace.path}", file=sys.stderr)
        else:
            workspace.remove()
    total = time.monotonic() - began
    print(table(rows))
    for row in rows:
        if row.note or row.floor_what:
            print(f"  {row.metric}: floor = {row.floor_what or '-'}; {row.note}")
    for name, summary in run.profiles.items():
        print(f"\nprofile: {name}")
        if isinstance(summary, str):
            print(summary)
            continue
        for kind in ("inclusive", "self", "libraries"):
            print(f"  {kind}: " + "; ".join(f"{frame} {share}%" for frame, share in summary[kind][:8]))
    results = os.path.join(HERE, "results")
    os.makedirs(results, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(results, f"{stamp}.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"when": stamp, "quick": args.quick, "seconds": round(total, 1), "scenario_seconds": timings,
                   "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                               "platform": platform.platform()},
                   "rows": [row.as_dict() for row in rows], "errors": errors, "profiles": run.profiles},
                  handle, indent=2)
    print(f"\n{len(rows)} figures in {total:.0f} s; written to {os.path.relpath(path)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
