"""``make bench`` / ``python -m bench [case …] [--rounds N] [--requests N] [--concurrency N]``."""

from __future__ import annotations

import argparse

from bench.cases import CASES
from bench.harness import measure, running_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    chosen = [c for c in CASES if not args.cases or c.name in args.cases]
    if not chosen:
        parser.error(f"no such case; known: {', '.join(c.name for c in CASES)}")
    print(f"{'case':<28}{'baseline rps':>14}{'case rps':>12}{'ratio':>8}{'goal':>7}  verdict")
    with running_server() as server:
        for case in chosen:
            result = measure(server, case, args.rounds, args.requests, args.concurrency)
            verdict = "ok" if result["ratio"] >= case.goal_ratio else "BELOW GOAL"
            print(
                f"{case.name:<28}{result['baseline_rps']:>14.0f}{result['case_rps']:>12.0f}"
                f"{result['ratio']:>8.2f}{case.goal_ratio:>7.2f}  {verdict} (vs {case.baseline_label})"
            )
    print("ratios are medians of interleaved rounds against each case's baseline on the same server")


if __name__ == "__main__":
    main()
