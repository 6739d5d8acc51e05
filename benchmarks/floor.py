"""Each stage of the answer's critical path alone, on the benchmark's own inputs: the "floor" beside the in-call
figures of `bench_latency` (what a hop costs with nothing else running; the difference is contention).

Measured in-process with the configured stages before the call starts: the ASR on every question's audio,
the LLM's first token and first clause (through the engine's clause chunker) for every question after the
system prompt, and the TTS's first audio for every first clause. VAD end is the configured min silence.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np
from hydra.utils import instantiate

from cvi_lab.engine.chunker import ClauseChunker
from cvi_lab.engine.pipeline_config import build_plan
from cvi_lab.stages.base import ChatMessage


async def measure_floor(cfg: Any, questions: list[str], audio: list[np.ndarray], system_prompt: str) -> dict[str, list[float]]:
    """Per question, ms: asr, llm_ttft, llm_first_clause (after the first token), tts_first_audio."""
    plan = build_plan(cfg)
    asr, llm, tts = (instantiate(plan.stages[g]) for g in ("asr", "llm", "tts"))
    for stage in (asr, llm, tts):
        await stage.warmup()
    out: dict[str, list[float]] = {"asr": [], "llm_ttft": [], "llm_first_clause": [], "tts_first_audio": []}
    for q, pcm in zip(questions, audio):
        t0 = time.perf_counter()
        await asr.transcribe(pcm, 16_000, plan.settings.language_code)
        out["asr"].append((time.perf_counter() - t0) * 1000)
        chunker, first_token, clause = ClauseChunker(plan.settings.chunker), None, None
        t0 = time.perf_counter()
        prompt = [ChatMessage("system", system_prompt), ChatMessage("user", q)]
        async with contextlib.aclosing(llm.stream(prompt, plan.settings.max_tokens)) as pieces:
            async for piece in pieces:
                first_token = first_token or time.perf_counter()
                done = chunker.push(piece)
                if done:
                    clause = done[0]
                    break
        clause = clause or (chunker.flush() or [q])[0]
        out["llm_ttft"].append((first_token - t0) * 1000)
        out["llm_first_clause"].append((time.perf_counter() - first_token) * 1000)
        t0 = time.perf_counter()
        async with contextlib.aclosing(tts.stream(clause)) as chunks:
            async for _ in chunks:
                break
        out["tts_first_audio"].append((time.perf_counter() - t0) * 1000)
    return out
