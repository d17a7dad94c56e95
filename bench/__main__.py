"""Run every benchmark and print one table: ``python -m bench`` (or ``make bench``).
``python -m bench distributed`` runs them over real stores and brokers (``distributed.py``).

``--quick`` runs smaller counts (a smoke run); numbers from a shared, noisy 2-core machine
should be read as ratios, with the machine's load in mind (the table prints the load average).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys

from bench.workloads import Results, run_all


def _table(results: Results) -> str:
    lines = [
        "| workload | measure | value | unit | note |",
        "|---|---|---:|---|---|",
    ]
    for row in results.rows:
        lines.append(
            f"| {row.workload} | {row.measure} | {row.value:,.1f} | {row.unit} | {row.note} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["distributed"]:
        from bench.distributed import main as distributed

        return distributed(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    args = parser.parse_args(argv)
    w1, w2, w4 = (500, 100, 50) if args.quick else (10_000, 1_000, 500)
    results = asyncio.run(run_all(w1=w1, w2=w2, w4=w4))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"Magic Flow embedded (SQLite + memory broker), Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, load average {load}"
    )
    print(_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
