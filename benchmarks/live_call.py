"""What the live-call benchmarks (bench_latency, bench_barge_in) share: summary statistics, the conditions of
a run (machine, load, event-loop lag, outbound audio) in the JSON and the Markdown header, and the command
line (Hydra overrides over cvi_lab/conf/serve.yaml, `--out`, writing `<name>.json` + `<name>.md`)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def stats(values: list[float | None]) -> dict:
    v = np.array([x for x in values if x is not None], float)
    if len(v) == 0:
        return {"n": 0, "p50": None, "p95": None, "mean": None}
    return {"n": int(len(v)), "p50": round(float(np.percentile(v, 50)), 1),
            "p95": round(float(np.percentile(v, 95)), 1), "mean": round(float(v.mean()), 1)}


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def conditions(result: dict) -> dict:
    """The run's conditions from a benchmark's `run()` result (load_before/after, loop_lag, outbound_audio)."""
    return {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
            "load_average_before": [round(x, 2) for x in result["load_before"]],
            "load_average_after": [round(x, 2) for x in result["load_after"]],
            "event_loop_lag": result["loop_lag"], "outbound_audio": result["outbound_audio"]}


def condition_lines(data: dict) -> list[str]:
    """Markdown bullets for `conditions(...)`, read from the benchmark's data."""
    m, lag, audio = data["machine"], data["event_loop_lag"], data["outbound_audio"]
    return [f"- machine: {m.get('cpu_model', m['processor'])}, {m['cpus']} CPUs, {m['platform']}, Python {m['python']}",
            f"- load average before / after: {data['load_average_before']} / {data['load_average_after']}",
            f"- event-loop lag (server and client share the loop; 50 ms probe): p50 {lag['p50_ms']} ms, "
            f"p99 {lag['p99_ms']} ms, max {lag['max_ms']} ms; replica audio dropped by the outbound queue: "
            f"{audio['dropped_ms']} ms, underruns: {audio['underruns']}"]


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def cli(argv: list[str] | None, *, name: str, doc: str, add_arguments: Callable[[argparse.ArgumentParser], None],
        measure: Callable[[Any, argparse.Namespace], tuple[dict, str]]) -> dict:
    """Parse the command line, compose the server config, `measure(cfg, args) -> (data, markdown)`, write both
    to `--out` as `<name>.json` / `<name>.md`, print the table; returns the data."""
    import logging

    p = argparse.ArgumentParser(prog=f"python -m benchmarks.bench_{name}", description=doc.split("\n\n")[0])
    add_arguments(p)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("overrides", nargs="*", help="Hydra key=value overrides over cvi_lab/conf/serve.yaml")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="[cvi-lab] %(levelname)s %(name)s: %(message)s")
    from cvi_lab.cli import compose_config

    data, md = measure(compose_config(args.overrides), args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=2))
    (out / f"{name}.md").write_text(md)
    print(md)
    print(f"written: {out / f'{name}.json'}, {out / f'{name}.md'}")
    return data
