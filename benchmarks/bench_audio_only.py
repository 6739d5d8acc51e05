"""The CPU an `audio_only` conversation saves: the same scripted call with the portrait avatar and with
`audio_only` (engine.audio_only_avatar: no image rendered), CPU seconds of this process (user + system) per call.

Why echo mode: the call's other work (VAD, TTS, frame pacing, the engine) is the same in both runs and the LLM's
variable decoding would drown the difference; what is left to differ is the rendering. Real stages (silero,
piper, portrait) from the shipped config. Writes benchmarks/results/audio_only.json and audio_only.md.
Run: `python -m benchmarks.bench_audio_only` (heavy: wrap in flock /tmp/cvi-heavy.lock on shared machines).
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import time

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
CID = "c-bench-audio-only"
LINES = ["Hello there, how is it going today? I am the replica, and I can talk with you about anything.",
         "This is a second sentence, spoken so that the call lasts long enough to measure what it costs."]


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


async def one_call(cfg, pool, audio_only: bool) -> dict:
    from cvi_lab.engine.engine import ConversationSpec
    from cvi_lab.engine.factory import create_engine
    from cvi_lab.engine.offline import Join, Send, WaitFor, WaitQuiet, run_script

    spec = ConversationSpec(CID, custom_greeting="Hi, I am here.", pipeline_mode="echo")
    eng = await create_engine(cfg, spec, pool=pool, audio_only=audio_only)
    await eng.start()
    base = {"message_type": "conversation", "conversation_id": CID, "event_type": "conversation.echo"}
    script = [Join(), WaitQuiet(timeout=60)]
    for line in LINES:
        script += [Send({**base, "properties": {"modality": "text", "text": line}}),
                   WaitFor("conversation.replica.stopped_speaking", timeout=60), WaitQuiet(timeout=60)]
    c0, w0 = _cpu(), time.perf_counter()
    try:
        res = await run_script(eng, script, keep_audio=False)
    finally:
        await eng.stop()
    cpu, wall = _cpu() - c0, time.perf_counter() - w0
    return {"audio_only": audio_only, "avatar": type(eng.stages.avatar).__name__, "cpu_s": round(cpu, 3),
            "wall_s": round(wall, 3), "cores": round(cpu / wall, 3), "frames": len(res.frame_times)}


async def main(repeats: int = 2) -> dict:
    from cvi_lab.cli import compose_config
    from cvi_lab.engine.stage_pool import StagePool

    cfg, pool = compose_config([]), StagePool()
    await one_call(cfg, pool, False)  # warm: models loaded, replica built, caches filled
    await one_call(cfg, pool, True)
    runs = [await one_call(cfg, pool, mode) for _ in range(repeats) for mode in (False, True)]
    video = [r for r in runs if not r["audio_only"]]
    audio = [r for r in runs if r["audio_only"]]
    mean = lambda rows, key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    summary = {"runs": runs, "cpu_s_video": round(mean(video, "cpu_s"), 3), "cpu_s_audio_only": round(mean(audio, "cpu_s"), 3),
               "cores_video": round(mean(video, "cores"), 3), "cores_audio_only": round(mean(audio, "cores"), 3)}
    summary["cpu_saved_pct"] = round(100 * (1 - summary["cpu_s_audio_only"] / summary["cpu_s_video"]), 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "audio_only.json").write_text(json.dumps(summary, indent=2))
    (RESULTS / "audio_only.md").write_text(
        "# audio_only: CPU of the same scripted call (echo mode, real stages)\n\n"
        "| mode | CPU s / call | cores |\n|---|---|---|\n"
        f"| portrait avatar | {summary['cpu_s_video']} | {summary['cores_video']} |\n"
        f"| audio_only | {summary['cpu_s_audio_only']} | {summary['cores_audio_only']} |\n\n"
        f"CPU saved: {summary['cpu_saved_pct']} %\n")
    return summary


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
