"""``python -m tests.bench [names...]``: run the benchmarks and print their figures."""

from __future__ import annotations

import sys

from tests.bench.common import setup_database


def main() -> None:
    url = setup_database()
    from tests.bench import (
        bench_a2a,
        bench_checkpoint,
        bench_composition,
        bench_dashboard,
        bench_llm,
        bench_policy,
        bench_replay,
        bench_schedules,
        bench_storage_replay,
        bench_throughput,
    )

    suites = {
        "checkpoint": bench_checkpoint.main,
        "storage": bench_storage_replay.main,
        "throughput": bench_throughput.main,
        "dashboard": bench_dashboard.main,
        "policy": bench_policy.main,
        "replay": bench_replay.main,
        "a2a": bench_a2a.main,
        "composition": bench_composition.main,
        "schedules": bench_schedules.main,
        "llm": bench_llm.main,
    }
    wanted = sys.argv[1:] or list(suites)
    for name in wanted:
        suites[name](url)


if __name__ == "__main__":
    main()
