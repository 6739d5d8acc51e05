"""The Pipecat side of the peer benchmark: a stock Pipecat 1.14 voice bot on cvi-lab's models.

Runs in Pipecat's own venv (scripts/ensure_pipecat_venv.sh), NOT in cvi-lab's: it imports nothing from
cvi_lab. The driver (benchmarks/bench_peer.py) passes every model path and setting on the command line, read
from cvi-lab's composed config, so both sides load the very same files.

Pipeline (Pipecat's documented shape for a local voice bot):
    SmallWebRTCTransport.input() -> WhisperSTTService (faster-whisper) -> LLMContextAggregatorPair.user()
      [SileroVADAnalyzer + TurnAnalyzerUserTurnStopStrategy(LocalSmartTurnAnalyzerV3)]
    -> OpenAILLMService (base_url = benchmarks/peer/llm_server.py) -> PiperTTSService
    -> SmallWebRTCTransport.output() -> .assistant()
On connect the bot says cvi-lab's greeting (TTSSpeakFrame; it enters the LLM context, as in cvi-lab).

Signaling: `POST /api/offer` {sdp, type} -> {sdp, type, pc_id, participant_id (= pc_id)} on 127.0.0.1,
served with aiohttp (a core Pipecat dependency) around `SmallWebRTCConnection`, as Pipecat's runner does
with FastAPI. One call per process. Prints `READY <port>` once the models are loaded.

    python benchmarks/peer/pipecat_bot.py --config bot.json [--port 0]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
from pathlib import Path


def allow_loopback_ice() -> None:
    """As cvi-lab's transport does: offer 127.0.0.1 as an ICE host candidate when the box has no other IPv4."""
    try:
        import aioice.ice as ice

        original = ice.get_host_addresses
        if any(":" not in a for a in original(use_ipv4=True, use_ipv6=False)):
            return

        def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            addrs = original(use_ipv4, use_ipv6)
            if use_ipv4 and not any(":" not in a for a in addrs):
                addrs.append("127.0.0.1")
            return addrs

        ice.get_host_addresses = with_loopback
    except Exception:  # pragma: no cover
        pass


def build_services(cfg: dict):
    """The heavy services, loaded before the call is accepted (like cvi-lab's stage warm-up)."""
    from pipecat.services.piper.tts import PiperTTSService
    from pipecat.services.whisper.stt import WhisperSTTService
    from pipecat.transcriptions.language import Language

    asr = cfg["asr"]

    class MatchedWhisperSTTService(WhisperSTTService):
        """Stock WhisperSTTService; only the decoding settings Pipecat 1.14 does not expose (CPU threads, beam
        size) are set to cvi-lab's, so the ASR model does the same work on both sides (`stock_whisper` in the
        config keeps faster-whisper's defaults instead: cpu_threads=0, i.e. CTranslate2's choice, beam_size=5)."""

        def _load(self):
            from faster_whisper import WhisperModel

            self._model = WhisperModel(str(self._settings.model), device=self._device,
                                       compute_type=self._compute_type, cpu_threads=int(asr["cpu_threads"]))
            self._model.transcribe = functools.partial(self._model.transcribe, beam_size=int(asr["beam_size"]))

    stt_cls = WhisperSTTService if cfg.get("stock_whisper") else MatchedWhisperSTTService
    stt = stt_cls(device="cpu", compute_type=asr["compute_type"],
                  settings=WhisperSTTService.Settings(model=asr["model_dir"], language=Language.EN,
                                                      no_speech_prob=float(asr["no_speech_threshold"])))
    # warm-up: one transcription of silence (faster-whisper's first call is slower than the rest)
    import numpy as np

    stt._model.transcribe(np.zeros(16000, np.float32), language="en")
    tts = PiperTTSService(download_dir=Path(cfg["tts"]["voice_dir"]),
                          settings=PiperTTSService.Settings(voice=cfg["tts"]["voice"]))
    return stt, tts


async def run_bot(connection, cfg: dict, stt, tts, done: asyncio.Event) -> None:
    from pipecat.audio.turn.smart_turn.base_smart_turn import SmartTurnParams
    from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.audio.vad.vad_analyzer import VADParams
    from pipecat.frames.frames import TTSSpeakFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import (LLMContextAggregatorPair,
                                                                       LLMUserAggregatorParams)
    from pipecat.services.openai.llm import OpenAILLMService
    from pipecat.transports.base_transport import TransportParams
    from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
    from pipecat.turns.user_stop import TurnAnalyzerUserTurnStopStrategy
    from pipecat.turns.user_turn_strategies import UserTurnStrategies
    from pipecat.workers.runner import WorkerRunner

    transport = SmallWebRTCTransport(webrtc_connection=connection,
                                     params=TransportParams(audio_in_enabled=True, audio_out_enabled=True))
    llm = OpenAILLMService(api_key="local", base_url=cfg["llm"]["base_url"],
                           settings=OpenAILLMService.Settings(model=cfg["llm"]["model"],
                                                              max_tokens=int(cfg["llm"]["max_tokens"])))
    vad = SileroVADAnalyzer(params=VADParams(confidence=float(cfg["vad"]["confidence"]),
                                             stop_secs=float(cfg["vad"]["stop_secs"])))
    turn = LocalSmartTurnAnalyzerV3(smart_turn_model_path=cfg["turn"]["model_path"],
                                    cpu_count=int(cfg["turn"]["cpu_threads"]),
                                    params=SmartTurnParams(stop_secs=float(cfg["turn"]["stop_secs"])))
    context = LLMContext(messages=[{"role": "system", "content": cfg["system_prompt"]}])
    user, assistant = LLMContextAggregatorPair(context, user_params=LLMUserAggregatorParams(
        vad_analyzer=vad, user_turn_strategies=UserTurnStrategies(
            stop=[TurnAnalyzerUserTurnStopStrategy(turn_analyzer=turn)])))
    pipeline = Pipeline([transport.input(), stt, user, llm, tts, transport.output(), assistant])
    worker = PipelineWorker(pipeline, params=PipelineParams(enable_metrics=True, enable_usage_metrics=True),
                            idle_timeout_secs=None)

    @transport.event_handler("on_client_connected")
    async def on_client_connected(_transport, _client):
        await worker.queue_frames([TTSSpeakFrame(cfg["greeting"])])

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(_transport, _client):
        await worker.cancel()

    try:
        await WorkerRunner(handle_sigint=False).run(worker)
    finally:
        done.set()


async def serve(args: argparse.Namespace) -> None:
    from aiohttp import web
    from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection

    cfg = json.loads(Path(args.config).read_text())
    allow_loopback_ice()
    stt, tts = build_services(cfg)
    done = asyncio.Event()
    tasks: list[asyncio.Task] = []

    async def offer(request: web.Request) -> web.Response:
        if tasks:
            return web.json_response({"error": "this bot serves one call"}, status=409)
        body = await request.json()
        connection = SmallWebRTCConnection(ice_servers=[])
        await connection.initialize(sdp=body["sdp"], type=body["type"])
        tasks.append(asyncio.create_task(run_bot(connection, cfg, stt, tts, done)))
        answer = connection.get_answer()
        return web.json_response(answer | {"participant_id": answer["pc_id"]})

    app = web.Application()
    app.router.add_post("/api/offer", offer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    port = runner.addresses[0][1]  # the bound port (args.port 0 = a free one)
    print(f"READY {port}", flush=True)
    try:
        await done.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="JSON written by benchmarks/bench_peer.py")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
