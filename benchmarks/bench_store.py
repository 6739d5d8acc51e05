"""`make bench-store`: what one store call costs on SQLite and on PostgreSQL, on this machine.

Why: the store's methods are synchronous and run on the event loop (cvi_lab/store/sqlite.py), so their latency
is loop time a live call waits. A call's steady writes are an event per utterance and a usage heartbeat every
`server.usage.heartbeat_s`; the API's reads are a get and a list page. Each operation is timed alone, N times,
on SQLite (a WAL file in a temporary folder) and PostgreSQL (a throwaway cluster on loopback TCP, fsync on, as
a real server runs, with the store's synchronous_commit=off; or `--pg-url` for one you run). Then two processes write at once (events + heartbeats) to
show what sharing costs. Writes benchmarks/results/store.json and store.md.

    python -m benchmarks.bench_store [--n 2000] [--pg-url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cvi_lab.store import Store

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]


def _timed(fn: Callable[[int], Any], n: int) -> dict[str, float]:
    samples = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - t) * 1000)
    v = np.array(samples)
    return {"n": n, "p50_ms": round(float(np.percentile(v, 50)), 3), "p95_ms": round(float(np.percentile(v, 95)), 3),
            "p99_ms": round(float(np.percentile(v, 99)), 3), "mean_ms": round(float(v.mean()), 3)}


def _record(cid: str) -> dict[str, Any]:
    return {"conversation_name": cid, "status": "active", "conversation_url": "http://h/meet/" + cid,
            "replica_id": "rdefa0017", "persona_id": "pdefa0017", "properties": {"language": "english"},
            "custom_greeting": "Hi.", "host_url": "http://h"}


def measure(location: str, n: int) -> dict[str, dict[str, float]]:
    store = Store(location)
    try:
        store.insert_conversation("cbench", _record("cbench"))
        store.start_usage("cbench")
        ops = {
            "insert_conversation": lambda i: store.insert_conversation(f"cb{i:06d}", _record(f"cb{i:06d}")),
            "add_event": lambda i: store.add_event("cbench", "conversation.utterance",
                                                   {"role": "user", "speech": f"turn {i}"}),
            "heartbeat_usage": lambda i: store.heartbeat_usage("cbench", float(i)),
            "get_conversation": lambda i: store.get_conversation(f"cb{i:06d}"),
            "list_conversations (page of 10)": lambda i: store.list_conversations(limit=10, page=1 + i % 5),
        }
        return {name: _timed(fn, n) for name, fn in ops.items()}
    finally:
        store.close()


def two_writers(location: str, n: int) -> dict[str, float]:
    """Two processes writing n conversations each (4 statements per iteration) at once: wall time, writes/s."""
    Store(location).close()  # migrated before the clock starts
    t = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "tests.store.writer", location, tag, str(n)], cwd=REPO)
             for tag in ("x", "y")]
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError("a writer process failed")
    wall = time.perf_counter() - t
    return {"statements": 8 * n, "wall_s": round(wall, 2), "statements_per_s": round(8 * n / wall)}


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = ["# Store: one call's cost on SQLite and PostgreSQL", "",
             f"- machine: {m['cpu_model']}, {m['cpus']} CPUs, {m['platform']}, Python {m['python']}",
             f"- load average before / after: {data['load_before']} / {data['load_after']}",
             f"- SQLite: WAL file, synchronous=NORMAL; PostgreSQL: {data['postgresql_where']}", "",
             "| operation | SQLite p50 ms | SQLite p95 ms | PostgreSQL p50 ms | PostgreSQL p95 ms |", "|---|---|---|---|---|"]
    for op, sq in data["sqlite"].items():
        pg = data["postgresql"][op]
        lines.append(f"| {op} | {sq['p50_ms']:.3f} | {sq['p95_ms']:.3f} | {pg['p50_ms']:.3f} | {pg['p95_ms']:.3f} |")
    lines += ["", "Two processes writing at once (each: insert, 2 events, heartbeat per iteration):", "",
              "| backend | statements | wall s (with two Python starts) | statements/s |", "|---|---|---|---|"]
    for backend in ("sqlite", "postgresql"):
        w = data["two_writers"][backend]
        lines.append(f"| {backend} | {w['statements']} | {w['wall_s']} | {w['statements_per_s']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--pg-url", default=None, help="an empty database to use instead of a throwaway cluster")
    args = parser.parse_args(argv)
    cluster = None
    if args.pg_url is None:
        from tests.store.postgres import Cluster  # the tests' throwaway cluster, fsync on

        cluster = Cluster(fsync=True)
    try:
        load_before = [round(x, 2) for x in os.getloadavg()]
        with tempfile.TemporaryDirectory() as tmp:
            pg_urls = [cluster.new_database() for _ in range(2)] if cluster else [args.pg_url, args.pg_url]
            data = {"sqlite": measure(str(Path(tmp) / "a.db"), args.n), "postgresql": measure(pg_urls[0], args.n),
                    "two_writers": {"sqlite": two_writers(str(Path(tmp) / "b.db"), args.n // 4),
                                    "postgresql": two_writers(pg_urls[1], args.n // 4)}}
        data.update(load_before=load_before, load_after=[round(x, 2) for x in os.getloadavg()],
                    postgresql_where="throwaway 15.x cluster, loopback TCP, fsync on, synchronous_commit off (the store's setting)" if cluster else "--pg-url",
                    machine={"platform": platform.platform(), "python": platform.python_version(),
                             "cpus": os.cpu_count(), "cpu_model": _cpu_model()},
                    created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    finally:
        if cluster is not None:
            cluster.stop()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "store.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / "store.md").write_text(markdown(data))
    print(markdown(data))


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
