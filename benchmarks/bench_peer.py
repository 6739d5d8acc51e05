"""`make bench-peer`: the same scripted participant against Pipecat, then against cvi-lab, on the same models.

Both sides hear identical audio (bench_latency's QUESTIONS spoken by `cvi_lab.harness.voice.speak`, espeak-ng by
default) from the same participant (cvi-lab's ParticipantClient; for Pipecat through the signaling/RTVI adapter
in benchmarks/peer/participant.py), and both are measured the same way: `cvi_lab.harness.call.spoken_turn`, response
latency = end of the participant's sent speech -> first voiced received sample of the reply (SPEC §4).

- Pipecat side: pipecat-ai 1.14.0 in its own venv (scripts/ensure_pipecat_venv.sh), a stock voice bot
  (benchmarks/peer/pipecat_bot.py: SmallWebRTCTransport, SileroVADAnalyzer, LocalSmartTurnAnalyzerV3,
  WhisperSTTService, OpenAILLMService, PiperTTSService) loading the very model files cvi-lab loads; its LLM
  is cvi-lab's configured LLM stage behind a loopback OpenAI-compatible server (benchmarks/peer/llm_server.py).
- cvi-lab side: benchmarks/bench_latency.run (the in-process server with cvi_lab/conf/serve.yaml's defaults).

Writes both distributions (p50/p95/mean) and the ratio cvi-lab p50 / Pipecat p50 to
benchmarks/results/peer.json and peer.md, with the run conditions and exactly how each side was wired.

    python -m benchmarks.bench_peer --pipecat-python PATH [--turns 10] [--voice espeak|piper]
                                    [--only pipecat|cvi-lab] [hydra overrides ...]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks.bench_latency import QUESTIONS
from benchmarks.live_call import RESULTS, cli, condition_lines, conditions, machine, ms, stats

REPO = Path(__file__).resolve().parent.parent
PIPECAT_VERSION = "1.14.0"


# ---------------------------------------------------------------------------------------------- wiring
def wiring(cfg: Any) -> dict:
    """Everything both sides are built from, read from cvi-lab's composed config (one source of truth)."""
    from omegaconf import OmegaConf

    from cvi_lab import assets
    from cvi_lab.domain.conversation import DEFAULT_GREETING
    from cvi_lab.domain.persona import DEFAULT_PERSONA
    from cvi_lab.engine.prompt import system_message
    from cvi_lab.engine.pipeline_config import build_plan

    plan = build_plan(cfg)
    st, s = plan.stages, plan.settings
    conf = {g: OmegaConf.to_container(c, resolve=True) for g, c in st.items()}
    asr, tts, vad, turn = conf["asr"], conf["tts"], conf["vad"], conf["turn"]
    model = str(asr.get("model"))
    asr_dir = (assets.whisper_tiny_en_dir() if model == "tiny_en" else assets.whisper_base_dir() if model == "base"
               else Path(model).expanduser())
    voice = Path(tts["model"]).expanduser() if tts.get("model") else assets.locate("piper_joe_onnx")
    # the system message cvi-lab's engine builds for bench_latency's call (default persona, no extra context)
    system = system_message(DEFAULT_PERSONA["system_prompt"], DEFAULT_PERSONA["context"], "", s.tools)
    return {
        "choices": plan.choices, "stages": conf,
        "system_prompt": system, "greeting": DEFAULT_GREETING, "max_tokens": s.max_tokens,
        "engine": {k: getattr(s, k) for k in ("vad_min_silence_ms", "turn_threshold", "max_patience_ms",
                                              "speculative_answer", "pause_llm_until_first_audio")},
        "bot": {  # what benchmarks/peer/pipecat_bot.py is given
            "system_prompt": system, "greeting": DEFAULT_GREETING,
            "asr": {"model_dir": str(asr_dir), "compute_type": asr.get("compute_type", "int8"),
                    "cpu_threads": asr.get("cpu_threads", 2), "beam_size": asr.get("beam_size", 1),
                    "no_speech_threshold": asr.get("no_speech_threshold", 0.6)},
            "tts": {"voice_dir": str(voice.parent), "voice": voice.name[: -len(".onnx")]},
            "vad": {"confidence": vad.get("threshold", 0.5), "stop_secs": s.vad_min_silence_ms / 1000.0},
            "turn": {"model_path": str(Path(turn["model_path"]).expanduser() if turn.get("model_path")
                                       else assets.locate("smart_turn_v3_onnx")),
                     "cpu_threads": turn.get("cpu_threads", 1), "stop_secs": s.max_patience_ms / 1000.0},
            "llm": {"model": "cvi-lab-llm", "max_tokens": s.max_tokens},
        },
    }


# ---------------------------------------------------------------------------------------------- processes
class Child:
    """A subprocess that prints `READY <port>` when it is up; its stderr goes to a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name, self.argv, self.log_path = name, argv, log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._drain: asyncio.Task | None = None
        self._log = None

    async def start(self, timeout: float) -> int:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "w")
        self.proc = await asyncio.create_subprocess_exec(*self.argv, stdout=asyncio.subprocess.PIPE,
                                                         stderr=self._log, env=env, cwd=str(REPO))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name} not ready within {timeout:.0f} s (log: {self.log_path})")
            try:
                raw = await asyncio.wait_for(self.proc.stdout.readline(), left)
            except asyncio.TimeoutError:
                continue
            if not raw:
                raise RuntimeError(f"{self.name} exited with {await self.proc.wait()} before it was ready "
                                   f"(log: {self.log_path})")
            line = raw.decode(errors="replace").strip()
            self.lines.append(line)
            if line.startswith("READY "):
                self._drain = asyncio.ensure_future(self._drain_stdout())
                return int(line.split()[1])

    async def _drain_stdout(self) -> None:
        while self.proc is not None and (raw := await self.proc.stdout.readline()):
            self.lines.append(raw.decode(errors="replace").rstrip())

    def cpu_s(self) -> float | None:
        """CPU seconds (user + system) the process (and its threads) used so far."""
        try:
            import psutil

            t = psutil.Process(self.proc.pid).cpu_times()
            return round(t.user + t.system, 1)
        except Exception:  # noqa: BLE001
            return None

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._drain is not None:
            self._drain.cancel()
        if self._log is not None:
            self._log.close()


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


# ---------------------------------------------------------------------------------------------- Pipecat side
async def run_pipecat(w: dict, questions: list[str], audio: list, pipecat_python: str, overrides: list[str],
                      log_dir: Path) -> dict:
    import aiohttp

    from benchmarks.peer.participant import PipecatParticipant, dump_events, heard_and_said
    from cvi_lab.harness.call import spoken_turn, wait_greeting
    from cvi_lab.loop_lag import LoopLagProbe

    llm = Child("llm server", [sys.executable, "-m", "benchmarks.peer.llm_server", "--system-prompt",
                               w["system_prompt"], *overrides], log_dir / "llm_server.log")
    bot_cfg_path = log_dir / "bot.json"
    bot = Child("pipecat bot", [pipecat_python, str(REPO / "benchmarks/peer/pipecat_bot.py"),
                                "--config", str(bot_cfg_path)], log_dir / "pipecat_bot.log")
    load_before = os.getloadavg()
    cpu0 = _own_cpu_s()
    turns: list[dict] = []
    greeted = False
    client = None
    try:
        llm_port = await llm.start(timeout=600)
        bot_cfg = json.loads(json.dumps(w["bot"]))
        bot_cfg["llm"]["base_url"] = f"http://127.0.0.1:{llm_port}/v1"
        bot_cfg_path.write_text(json.dumps(bot_cfg, indent=2))
        bot_port = await bot.start(timeout=300)
        async with LoopLagProbe() as lag:
            client = PipecatParticipant(f"http://127.0.0.1:{bot_port}")
            await client.join(timeout=60)
            greeted = await wait_greeting(client, timeout=180)
            for i, (q, pcm) in enumerate(zip(questions, audio)):
                turn = await spoken_turn(client, pcm, timeout=90)
                # Pipecat may pause between sentences long enough to report bot-stopped-speaking; wait until
                # the reply has been quiet for 1 s so the next question never talks over it (no barge-in).
                if turn["first_voiced"] is not None:
                    await client.wait_quiet(turn["first_voiced"], 1.0, 60)
                turn["text"] = q
                turns.append(turn)
                print(f"pipecat turn {i + 1:2d}/{len(questions)}: {turn['client_latency_ms']} ms  ({q})", flush=True)
            await asyncio.sleep(0.5)
        cpu = {"participant_process_s": round(_own_cpu_s() - cpu0, 1), "bot_process_s": bot.cpu_s(),
               "llm_server_process_s": llm.cpu_s()}
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{llm_port}/stats") as r:
                llm_requests = (await r.json())["requests"]
    finally:
        if client is not None:
            await client.leave()
            dump_events(client, log_dir / "pipecat_events.jsonl")
        await bot.stop()
        await llm.stop()
    rows = []
    for i, t in enumerate(turns):
        until = turns[i + 1]["sent_at"] if i + 1 < len(turns) else None
        heard, said = heard_and_said(client, t["sent_at"], until)
        rows.append({"turn": i + 1, "question": t["text"], "heard": heard, "answer": said,
                     "client_latency_ms": t["client_latency_ms"]})
    return {"rows": rows, "greeted": greeted, "load_before": load_before, "load_after": os.getloadavg(),
            "loop_lag": lag.summary(worst=5), "cpu_s": cpu, "llm_requests": llm_requests,
            "pipecat_metrics": _rtvi_metrics(client), "llm_server": llm.lines[:1]}


def _rtvi_metrics(client: Any) -> dict[str, list[float]]:
    """Pipecat's own per-service metrics (RTVI `metrics` messages): ttfb / processing seconds per processor."""
    out: dict[str, list[float]] = {}
    for _, e in client.rec.events:
        if not (isinstance(e, dict) and e.get("label") == "rtvi-ai" and e.get("type") == "metrics"):
            continue
        for kind in ("ttfb", "processing"):
            for m in (e.get("data") or {}).get(kind) or []:
                if isinstance(m, dict) and m.get("value") is not None:
                    name = str(m.get("processor", "?")).split("#")[0]
                    out.setdefault(f"{kind} {name}", []).append(round(float(m["value"]) * 1000.0, 1))
    return out


# ---------------------------------------------------------------------------------------------- cvi-lab side
async def run_cvi_lab(cfg: Any, n_turns: int, voice: str) -> dict:
    from benchmarks.bench_latency import run

    cpu0 = _own_cpu_s()
    result = await run(cfg, n_turns, voice)
    result["cpu_s"] = {"process_s": round(_own_cpu_s() - cpu0, 1)}
    return result


# ---------------------------------------------------------------------------------------------- report
def source_revision() -> dict:
    """The commit measured (and whether tracked files had uncommitted changes); CVI_LAB_COMMIT when the code
    runs from an exported snapshot without .git."""
    import subprocess

    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
        return {"commit": rev, "uncommitted_changes": dirty}
    except Exception:  # noqa: BLE001
        return {"commit": os.environ.get("CVI_LAB_COMMIT"), "uncommitted_changes": None}


def _distribution(rows: list[dict]) -> dict:
    vals = [r["client_latency_ms"] for r in rows]
    s = stats(vals)
    ok = [v for v in vals if v is not None]
    return s | {"min": round(min(ok), 1) if ok else None, "max": round(max(ok), 1) if ok else None,
                "answered": len(ok), "turns": len(vals)}


def report(res: dict, w: dict, args: Any, wall_s: float) -> tuple[dict, str]:
    pc, cl = res.get("pipecat"), res.get("cvi_lab")
    data: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
                            "source": source_revision(),
                            "turns": args.turns, "participant_voice": args.voice, "wall_s": round(wall_s, 1),
                            "measure": "end of the participant's sent speech -> first voiced (-40 dBFS) received "
                                       "sample of the reply, cvi_lab.harness.call.spoken_turn (SPEC §4)",
                            "order": [k for k in ("pipecat", "cvi_lab") if res.get(k) is not None],
                            "wiring": {k: w[k] for k in ("choices", "stages", "system_prompt", "greeting",
                                                         "max_tokens", "engine")} | {"pipecat_bot": w["bot"]}}
    if pc is not None:
        data["pipecat"] = {"version": PIPECAT_VERSION, "response_latency_ms": _distribution(pc["rows"]),
                           "greeting_heard": pc["greeted"],
                           "load_average_before": [round(x, 2) for x in pc["load_before"]],
                           "load_average_after": [round(x, 2) for x in pc["load_after"]],
                           "participant_event_loop_lag": pc["loop_lag"], "cpu_s": pc["cpu_s"],
                           "service_metrics_ms": {k: stats(v) for k, v in pc["pipecat_metrics"].items()},
                           "llm_server": {"ttft_ms": stats([r.get("ttft_ms") for r in pc["llm_requests"]]),
                                          "completion_tokens": stats([r.get("completion_tokens")
                                                                      for r in pc["llm_requests"]]),
                                          "requests": len(pc["llm_requests"])},
                           "per_turn": pc["rows"]}
    if cl is not None:
        rows = cl["rows"]
        spans = {k: stats([r["engine"].get(k) for r in rows]) for k in ("asr_ms", "turn_ms", "llm_ttft_ms",
                                                                          "tts_ttfb_ms")}
        data["cvi_lab"] = conditions(cl) | {"response_latency_ms": _distribution(rows), "cpu_s": cl["cpu_s"],
                                            "engine_spans_ms": spans,
                                            "per_turn": [{k: r[k] for k in ("turn", "question", "heard", "answer",
                                                                            "client_latency_ms")}
                                                         | {"engine": r["engine"]} for r in rows]}
    p50 = lambda k: (data.get(k) or {}).get("response_latency_ms", {}).get("p50")  # noqa: E731
    data["ratio_p50_cvi_lab_over_pipecat"] = (round(p50("cvi_lab") / p50("pipecat"), 3)
                                              if p50("cvi_lab") and p50("pipecat") else None)
    return data, markdown(data)


def markdown(d: dict) -> str:
    f = ms
    m = d["machine"]
    pc, cl, ratio = d.get("pipecat"), d.get("cvi_lab"), d["ratio_p50_cvi_lab_over_pipecat"]
    L = ["# Peer benchmark: cvi-lab vs Pipecat on the same models", "",
         f"- measure: {d['measure']}; {d['turns']} scripted turns per side (benchmarks/bench_latency.py QUESTIONS, "
         f"spoken by {d['participant_voice']}: the same audio to both sides); run order: {' then '.join(d['order'])}; "
         f"wall {d['wall_s']} s",
         f"- machine: {m.get('cpu_model', m['processor'])}, {m['cpus']} CPUs, {m['platform']}, Python {m['python']}",
         f"- cvi-lab source: commit {(d.get('source') or {}).get('commit')} (uncommitted changes to tracked files: "
         f"{(d.get('source') or {}).get('uncommitted_changes')})",
         "", "| system | answered | p50 ms | p95 ms | mean ms | min ms | max ms |", "|---|---|---|---|---|---|---|"]
    for name, side in (("Pipecat " + PIPECAT_VERSION, pc), ("cvi-lab", cl)):
        if side is None:
            continue
        r = side["response_latency_ms"]
        L.append(f"| {name} | {r['answered']}/{r['turns']} | {f(r['p50'])} | {f(r['p95'])} | {f(r['mean'])} | "
                 f"{f(r['min'])} | {f(r['max'])} |")
    L += ["", f"**Ratio cvi-lab p50 / Pipecat p50: {ratio if ratio is not None else '-'}** "
              "(< 1: cvi-lab answers sooner).", "", "## Run conditions", ""]
    if pc is not None:
        lag, cpu = pc["participant_event_loop_lag"], pc["cpu_s"]
        L += [f"- Pipecat: load average before / after {pc['load_average_before']} / {pc['load_average_after']}; "
              f"participant's event loop lag p50 {lag['p50_ms']} ms, p99 {lag['p99_ms']} ms, max {lag['max_ms']} ms; "
              f"CPU s: bot {cpu['bot_process_s']}, LLM server {cpu['llm_server_process_s']}, participant "
              f"{cpu['participant_process_s']}; greeting heard: {pc['greeting_heard']}"]
    if cl is not None:
        L += ["- cvi-lab (server, engine and participant share one process and one event loop):"]
        L += ["  " + line for line in condition_lines(cl)]
        L += [f"  - CPU s (the whole process): {cl['cpu_s']['process_s']}"]
    L += ["", "## Where the time goes (each side's own figures)", ""]
    if pc is not None:
        L += ["Pipecat (its RTVI `metrics` messages; LLM time-to-first-token as the LLM server saw it):", "",
              "| figure | n | p50 ms | p95 ms |", "|---|---|---|---|"]
        for k, s in pc["service_metrics_ms"].items():
            L.append(f"| {k} | {s['n']} | {f(s['p50'])} | {f(s['p95'])} |")
        s = pc["llm_server"]["ttft_ms"]
        L += [f"| LLM server TTFT (request in -> first piece) | {s['n']} | {f(s['p50'])} | {f(s['p95'])} |", ""]
    if cl is not None:
        L += ["cvi-lab (engine spans, benchmarks/results/latency.md has the full hop breakdown):", "",
              "| figure | n | p50 ms | p95 ms |", "|---|---|---|---|"]
        for k, s in cl["engine_spans_ms"].items():
            L.append(f"| {k} | {s['n']} | {f(s['p50'])} | {f(s['p95'])} |")
        L.append("")
    L += wiring_lines(d["wiring"])
    L += fairness_lines()
    L += ["", "## Turns", "", "| # | asked | Pipecat ms | Pipecat heard | cvi-lab ms | cvi-lab heard |",
          "|---|---|---|---|---|---|"]
    n = max(len((pc or {}).get("per_turn", [])), len((cl or {}).get("per_turn", [])))
    for i in range(n):
        a = pc["per_turn"][i] if pc and i < len(pc["per_turn"]) else {}
        b = cl["per_turn"][i] if cl and i < len(cl["per_turn"]) else {}
        q = a.get("question") or b.get("question", "")
        L.append(f"| {i + 1} | {q} | {f(a.get('client_latency_ms'))} | {a.get('heard', '')} | "
                 f"{f(b.get('client_latency_ms'))} | {b.get('heard', '')} |")
    L += ["", "## Answers", ""]
    for i in range(n):
        a = pc["per_turn"][i] if pc and i < len(pc["per_turn"]) else {}
        b = cl["per_turn"][i] if cl and i < len(cl["per_turn"]) else {}
        L.append(f"{i + 1}. Pipecat: {a.get('answer', '') or '-'} / cvi-lab: {b.get('answer', '') or '-'}")
    if d.get("errors"):
        L += ["", "## Errors", "", *(f"- {k}: {v}" for k, v in d["errors"].items())]
    return "\n".join(L) + "\n"


def wiring_lines(wi: dict) -> list[str]:
    st, bot, eng = wi["stages"], wi["pipecat_bot"], wi["engine"]
    llm = st["llm"]
    llm_desc = ", ".join(f"{k}={v}" for k, v in llm.items() if k != "_target_")
    return [
        "## How each side was wired", "",
        "Both sides load the same model files (paths below, resolved by cvi_lab.assets) on this one 2-core "
        "machine, one side after the other; both see the same participant audio through the same client code.", "",
        "| | Pipecat " + PIPECAT_VERSION + " (own venv, benchmarks/peer/requirements-pipecat.txt) | cvi-lab |",
        "|---|---|---|",
        "| transport | SmallWebRTCTransport (aiortc 1.16.0), offer/answer over HTTP (`POST /api/offer`), audio only, "
        "output 24 kHz (PipelineParams default) -> Opus | cvi-lab's aiortc transport (`/meet/<id>/offer`), audio "
        "48 kHz + the avatar's video track |",
        f"| VAD | SileroVADAnalyzer (pipecat's bundled silero_vad.onnx, identical to silero-vad's), "
        f"confidence {bot['vad']['confidence']}, stop_secs {bot['vad']['stop_secs']}, start_secs 0.2 and "
        f"min_volume 0.6 (defaults) | {st['vad']['_target_'].rsplit('.', 1)[-1]} threshold "
        f"{st['vad'].get('threshold')}, min silence {eng['vad_min_silence_ms']} ms |",
        f"| end of turn | TurnAnalyzerUserTurnStopStrategy(LocalSmartTurnAnalyzerV3) on `{bot['turn']['model_path']}`, "
        f"cpu_count {bot['turn']['cpu_threads']}, complete at p > 0.5, else after stop_secs "
        f"{bot['turn']['stop_secs']} s of silence | {st['turn']['_target_'].rsplit('.', 1)[-1]} (same file), "
        f"complete at p >= {eng['turn_threshold']}, else after max patience {eng['max_patience_ms']} ms; "
        f"speculative answer during the patience: {eng['speculative_answer']} |",
        f"| ASR | WhisperSTTService (faster-whisper 1.2.1) on `{bot['asr']['model_dir']}`, compute_type "
        f"{bot['asr']['compute_type']}, cpu_threads {bot['asr']['cpu_threads']} and beam_size "
        f"{bot['asr']['beam_size']} (set to cvi-lab's; Pipecat 1.14 does not expose them: faster-whisper's "
        f"defaults are 0 = CTranslate2's choice and 5), no_speech_prob {bot['asr']['no_speech_threshold']}; "
        f"transcribes the segment once the VAD stops | {st['asr']['_target_'].rsplit('.', 1)[-1]} same dir, "
        f"{st['asr'].get('compute_type')}, {st['asr'].get('cpu_threads')} threads, beam {st['asr'].get('beam_size')} |",
        f"| LLM | OpenAILLMService -> benchmarks/peer/llm_server.py (loopback, OUR venv, separate process) serving "
        f"cvi-lab's LLM stage `{wi['choices'].get('llm')}` built by cvi-lab's build_plan ({llm_desc}), prefix cache "
        f"primed with the system message; max_tokens {bot['llm']['max_tokens']}; Pipecat sends the whole context "
        f"each turn | the same stage in-process, max_tokens {wi['max_tokens']}; LLM paused while the first clause "
        f"is synthesized: {eng['pause_llm_until_first_audio']} |",
        f"| TTS | PiperTTSService (piper-tts 1.8.0) on `{bot['tts']['voice_dir']}/{bot['tts']['voice']}.onnx`, "
        f"Pipecat's default sentence aggregation, piper's default synthesis config, onnxruntime default threads | "
        f"{st['tts']['_target_'].rsplit('.', 1)[-1]} same voice, chunking {st['tts'].get('chunking')} (first clause "
        f"from {st['tts'].get('min_clause_words')} words), {st['tts'].get('cpu_threads')} thread |",
        "| avatar | none (Pipecat has no local avatar) | " + st.get("avatar", {}).get("_target_", "-").rsplit(".", 1)[-1]
        + " lip-synced video, rendered during the call |",
        "| processes | bot + LLM server + participant: 3 processes | server + engine + participant: 1 process |",
        "", f"System message (both): \"{wi['system_prompt']}\"; greeting (both, enters the LLM context): "
            f"\"{wi['greeting']}\"; max tokens {wi['max_tokens']}.",
    ]


def fairness_lines() -> list[str]:
    return [
        "", "## What is the same, what differs", "",
        "- Same on both sides: the model files (Silero and Smart Turn v3 ONNX files byte-identical, the one "
        "CTranslate2 whisper tiny.en directory, the one Piper voice, the LLM stage cvi-lab's config builds); the "
        "system message, greeting and max tokens; VAD stop 200 ms, end-of-turn threshold 0.5, 1.2 s patience; "
        "whisper int8, 2 threads, beam 1; the participant audio and the client code that measures it.",
        "- Differs by design (what this benchmark compares): cvi-lab hands the TTS the first clause (2-10 words) "
        "while Pipecat's default text aggregation waits for a whole sentence from the LLM; cvi-lab prepares a "
        "speculative answer while the end-of-turn patience runs and pauses the LLM while the first clause is "
        "synthesized; Pipecat transcribes once the VAD stops and waits for the transcript before the LLM.",
        "- Differs by necessity: Pipecat reaches the LLM over loopback HTTP (a few ms per request) in another "
        "process, cvi-lab calls it in-process; cvi-lab also renders and sends the avatar's video (CPU Pipecat "
        "does not spend); the two sides run one after the other, so background load differs (reported above per "
        "side: this 2-core machine is shared).",
    ]


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    from cvi_lab.harness.voice import speak

    def add_arguments(p):
        p.add_argument("--turns", type=int, default=10)
        p.add_argument("--voice", default="espeak", choices=["espeak", "piper"])
        p.add_argument("--pipecat-python", default=os.environ.get("PIPECAT_PYTHON"),
                       help="python of Pipecat's venv (scripts/ensure_pipecat_venv.sh prints it)")
        p.add_argument("--only", choices=["pipecat", "cvi-lab"], help="run one side only (debugging)")
        p.add_argument("--logs", default=None, help="folder for the bot / LLM-server logs and Pipecat's events")
        p.add_argument("--render-only", action="store_true", help="rewrite peer.md from <out>/peer.json, no run")

    def measure(cfg, args):
        if args.render_only:
            data = json.loads((Path(args.out) / "peer.json").read_text())
            return data, markdown(data)
        if args.only != "cvi-lab" and not args.pipecat_python:
            raise SystemExit("--pipecat-python is required (run: bash scripts/ensure_pipecat_venv.sh)")
        overrides = list(args.overrides)
        w = wiring(cfg)
        questions = (QUESTIONS * ((args.turns + len(QUESTIONS) - 1) // len(QUESTIONS)))[: args.turns]
        audio = [speak(q, voice=args.voice) for q in questions]
        log_dir = Path(args.logs or tempfile.mkdtemp(prefix="cvi-lab-peer-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        print(f"[bench-peer] logs: {log_dir}", flush=True)
        t0 = time.monotonic()
        res: dict[str, Any] = {}
        errors: dict[str, str] = {}
        sides = {"pipecat": lambda: run_pipecat(w, questions, audio, args.pipecat_python, overrides, log_dir),
                 "cvi_lab": lambda: run_cvi_lab(cfg, args.turns, args.voice)}
        for side, run in sides.items():
            if args.only and args.only.replace("-", "_") != side:
                continue
            try:  # one side failing still reports the other (and says why)
                res[side] = asyncio.run(run())
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc()
                errors[side] = f"{type(exc).__name__}: {exc}"
        data, _ = report(res, w, args, time.monotonic() - t0)
        if errors:
            data["errors"] = errors
        return data, markdown(data)

    data = cli(argv, name="peer", doc=__doc__, add_arguments=add_arguments, measure=measure)
    sides = [data[k]["response_latency_ms"] for k in ("pipecat", "cvi_lab") if k in data]
    return 0 if sides and not data.get("errors") and all(s["answered"] == s["turns"] for s in sides) else 1


if __name__ == "__main__":
    sys.exit(main())
