"""Side-by-side throughput benchmarks: every case is measured against a trivial baseline in one run."""
