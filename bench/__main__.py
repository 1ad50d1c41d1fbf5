"""``make bench`` / ``python -m bench [case …] [--rounds N] [--requests N] [--concurrency N] [--jobs N]``."""

from __future__ import annotations

import argparse

from bench.cases import CASES
from bench.harness import measure, running_server
from bench.jobs import GOAL_RATIO as JOB_GOAL
from bench.jobs import measure_payout_job
from bench.pools import POOL_CASES, describe, verify_pools
from bench.verify import CASES as VERIFY_CASES
from bench.verify import GOAL_RATIO as VERIFY_GOAL
from bench.verify import measure_verify

JOB_CASE = "payout-job"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=200, help="jobs per round (payout-job)")
    args = parser.parse_args()
    chosen = [c for c in CASES if not args.cases or c.name in args.cases]
    job_case = not args.cases or JOB_CASE in args.cases
    verify_cases = not args.cases or bool(set(VERIFY_CASES) & set(args.cases))
    if not chosen and not job_case and not verify_cases:
        known = [*(c.name for c in CASES), JOB_CASE, *VERIFY_CASES]
        parser.error(f"no such case; known: {', '.join(known)}")
    print(f"{'case':<28}{'baseline rps':>14}{'case rps':>12}{'ratio':>8}{'goal':>7}  verdict")
    if job_case:
        result = measure_payout_job(args.rounds, args.jobs)
        verdict = "ok" if result["ratio"] >= JOB_GOAL else "BELOW GOAL"
        print(
            f"{JOB_CASE:<28}{result['baseline_rps']:>14.0f}{result['case_rps']:>12.0f}"
            f"{result['ratio']:>8.2f}{JOB_GOAL:>7.2f}  {verdict} (vs a no-op job, jobs/s)"
        )
    if verify_cases:
        verify = measure_verify(args.rounds)
        for name, rate, ratio in (
            (VERIFY_CASES[0], verify.ours_rate, verify.ratio),
            (VERIFY_CASES[1], verify.bare_rate, verify.bare_ratio),
        ):
            verdict = "ok" if ratio >= VERIFY_GOAL else "BELOW GOAL"
            print(
                f"{name:<28}{verify.theirs_rate:>14.0f}{rate:>12.0f}{ratio:>8.2f}{VERIFY_GOAL:>7.2f}  {verdict} "
                "(vs wechatpayv3 callback(), calls/s in-process)"
            )
    if not chosen:
        return
    with running_server() as server:
        for case in chosen:
            result = measure(server, case, args.rounds, args.requests, args.concurrency)
            verdict = "ok" if result["ratio"] >= case.goal_ratio else "BELOW GOAL"
            print(
                f"{case.name:<28}{result['baseline_rps']:>14.0f}{result['case_rps']:>12.0f}"
                f"{result['ratio']:>8.2f}{case.goal_ratio:>7.2f}  {verdict} (vs {case.baseline_label})"
            )
        if any(case in POOL_CASES for case in chosen):
            print(describe(verify_pools(server)))
    print("ratios are medians of interleaved rounds against each case's baseline on the same server")


if __name__ == "__main__":
    main()
