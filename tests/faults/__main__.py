"""`scripts/faults [--long] [--runs N]`: the fault suite; exit 1 if any scenario or reading failed."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from tests.faults.suite import LONG, SHORT, Run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/faults", description=__doc__)
    p.add_argument("--long", action="store_true", help="≥ 20 kills, 3 min InfluxDB, 2 min broker")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--rate", type=float, default=None, help="msg/s (default 2000)")
    p.add_argument("--seed", type=int, default=None, help="the kill moments' random seed")
    p.add_argument("--only", action="append", default=None, help="run just this scenario")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    mode = LONG if args.long else SHORT
    mode = replace(mode, seed=args.seed, rate=args.rate or mode.rate)
    failed = 0
    totals = {"kills": 0, "published": 0, "stored": 0, "lost": 0, "doubled": 0}
    for i in range(args.runs):
        workdir = Path(tempfile.mkdtemp(prefix="streetwatch-faults-"))
        print(f"== run {i + 1}/{args.runs} ({mode.name})", flush=True)
        result = Run(mode, workdir, log=lambda line: print(line, flush=True), only=args.only).run()
        print(result.summary(), flush=True)
        v = result.verdict
        bad = any(not s.ok for s in result.scenarios.values()) or v is None or not v.ok
        failed += bad
        totals["kills"] += result.kills
        if v is not None:
            for key in ("published", "stored", "lost", "doubled"):
                totals[key] += getattr(v, key)
        if not (args.keep or bad):
            shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"== {args.runs} run(s), {failed} failed; "
        + ", ".join(f"{k} {n}" for k, n in totals.items())
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
