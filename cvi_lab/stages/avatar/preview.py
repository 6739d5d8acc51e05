"""`cvi-lab replica preview`: speak a sentence with Piper, render it with the avatar, write an MP4 to look at.

Why: a person judges lip-sync and idle motion by watching; this writes H.264 (or MPEG-4) video + AAC audio
through PyAV, from the same `render_offline` code path the metrics use.

    cvi-lab replica preview --text "Hello there" --out preview.mp4 [--replica-dir DIR | --image FACE.jpg]
                            [--greenscreen] [--seconds 6] [--seed 0] [--width 512 --height 512 --fps 25]
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import sys
import tempfile
from fractions import Fraction
from typing import Sequence

import numpy as np

from cvi_lab.domain.conversation import DEFAULT_GREETING
from cvi_lab.media import TTSChunk, VideoFrame


def synthesize(text: str) -> list[TTSChunk]:
    """Real speech for `text`: the project's TTS stage (tts/piper.yaml) when it loads, else Piper directly."""
    try:
        from hydra.utils import instantiate

        from cvi_lab.config import load_group

        tts = instantiate(load_group("tts", "piper"))

        async def collect() -> list[TTSChunk]:
            return [c async for c in tts.stream(text)]

        return asyncio.run(collect())
    except Exception:  # the TTS stage is someone else's work in progress: fall back to Piper itself
        pass
    from piper import PiperVoice

    from cvi_lab.assets import locate

    voice = PiperVoice.load(str(locate("piper_joe_onnx")), config_path=str(locate("piper_joe_json")))
    return [
        TTSChunk(c.audio_float_array.astype(np.float32), c.sample_rate, text=text, phoneme_string="".join(c.phonemes))
        for c in voice.synthesize(text)
    ]


def write_mp4(frames: Sequence[VideoFrame], path: str | pathlib.Path, fps: int) -> pathlib.Path:
    """Encode frames (+ their audio) to MP4: libx264 (yuv420p) when available, else mpeg4; AAC audio."""
    import av

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].image.shape[:2]
    rate = frames[0].audio_rate
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        if codec == "libx264":
            vs.options = {"crf": "20", "preset": "veryfast"}
        else:
            vs.bit_rate = 2_000_000
        aus = out.add_stream("aac", rate=rate, layout="mono")
        audio = np.concatenate([f.audio for f in frames]).astype(np.float32)
        for f in frames:
            img = np.ascontiguousarray(f.image[: vs.height, : vs.width])
            for pkt in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        step = 1024
        for i in range(0, len(audio), step):
            block = audio[i : i + step]
            af = av.AudioFrame.from_ndarray(block[None, :], format="flt", layout="mono")
            af.sample_rate = rate
            af.pts = i
            af.time_base = Fraction(1, rate)
            for pkt in aus.encode(af):
                out.mux(pkt)
        for pkt in aus.encode():
            out.mux(pkt)
    return path


def render_preview(text: str, out: str | pathlib.Path, replica_dir: str | pathlib.Path | None = None,
                   greenscreen: bool = False, seconds: float = 0.0, seed: int = 0, width: int = 512,
                   height: int = 512, fps: int = 25) -> dict:
    from cvi_lab.stages.avatar.portrait import PortraitRenderer

    chunks = synthesize(text) if text.strip() else []
    renderer = PortraitRenderer(replica_dir=replica_dir, apply_greenscreen=greenscreen, seed=seed, width=width,
                                height=height, fps=fps, render_in_thread=False,
                                audio_rate=chunks[0].sample_rate if chunks else 22050)
    frames = renderer.render_offline(chunks, pad_s=0.5)
    while len(frames) < int(round(seconds * fps)):
        frames.append(renderer.next_frame())
    write_mp4(frames, out, fps)
    return {"out": str(out), "frames": len(frames), "seconds": len(frames) / fps,
            "render_ms_median": float(np.median(renderer.render_ms))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cvi-lab replica preview", description="Render a replica speaking to an MP4.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--replica-dir", help="artifacts of a built replica (default: the astronaut replica)")
    src.add_argument("--image", help="build a replica from this portrait/video first (into a temp dir)")
    p.add_argument("--text", default=DEFAULT_GREETING)
    p.add_argument("--out", default="replica_preview.mp4")
    p.add_argument("--greenscreen", action="store_true")
    p.add_argument("--seconds", type=float, default=0.0, help="minimum length (idle frames are added)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--fps", type=int, default=25)
    args = p.parse_args(argv)
    from cvi_lab.stages.avatar.replica_builder import ReplicaBuildError, build_replica

    with tempfile.TemporaryDirectory(prefix="cvi-replica-") as tmp:
        replica_dir = args.replica_dir
        try:
            if args.image:
                build_replica(args.image, pathlib.Path(tmp))
                replica_dir = tmp
            info = render_preview(args.text, args.out, replica_dir, args.greenscreen, args.seconds, args.seed,
                                  args.width, args.height, args.fps)
        except (ReplicaBuildError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print(f"wrote {info['out']}: {info['frames']} frames, {info['seconds']:.2f} s "
          f"(median render {info['render_ms_median']:.1f} ms/frame)")
    return 0


if __name__ == "__main__":  # python -m cvi_lab.stages.avatar.preview
    raise SystemExit(main())
