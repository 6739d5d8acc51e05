"""The portrait renderer on real TTS audio, judged only by its frames and audio (cvi_lab.metrics.lipsync)."""

import asyncio
import pathlib

import cv2
import numpy as np
import pytest

from cvi_lab.metrics.lipsync import greenscreen_check, idle_motion, lipsync_report
from cvi_lab.stages.avatar.portrait import PortraitRenderer
from cvi_lab.stages.base import AvatarRenderer
from cvi_lab.media import Timing, TTSChunk

REPO = pathlib.Path(__file__).resolve().parents[3]


def _render(replica, chunks, **kw):
    r = PortraitRenderer(replica_dir=replica, render_in_thread=False, **kw)
    return r, r.render_offline(chunks, pad_s=0.6)


def test_lipsync_on_real_speech(astronaut_replica, speech_chunks):
    r, frames = _render(astronaut_replica, speech_chunks)
    assert all(f.image.shape == (512, 512, 3) and f.image.dtype == np.uint8 for f in frames)
    # every frame carries exactly its share of the audio, and together they are the whole speech
    assert all(len(f.audio) == 882 and f.audio_rate == 22050 for f in frames)
    total = np.concatenate([f.audio for f in frames])
    speech = np.concatenate([c.samples for c in speech_chunks])
    start = int(0.6 * 25) * 882
    np.testing.assert_allclose(total[start : start + len(speech)], speech, atol=1e-6)
    assert [f.pts for f in frames[:3]] == [0.0, 0.04, 0.08]
    rep = lipsync_report([f.image for f in frames], [f.audio for f in frames], fps=25)
    assert abs(rep.offset_ms) <= 40, rep.as_dict()
    assert rep.peak_corr > 0.5, rep.as_dict()
    assert rep.closed_in_silence, rep.as_dict()
    assert rep.silence_frames >= 20 and rep.speech_frames >= 50


def test_phoneme_timings_drive_visemes(astronaut_replica, speech_chunks):
    """With phoneme timings a bilabial (m) shuts the lips even while audio is loud."""
    c = speech_chunks[0]
    dur = c.duration
    timed = TTSChunk(c.samples, c.sample_rate, phonemes=[Timing("m", 0.0, dur)])
    r, frames = _render(astronaut_replica, [timed])
    r2, frames2 = _render(astronaut_replica, [TTSChunk(c.samples, c.sample_rate, phonemes=[Timing("a", 0.0, dur)])])
    rep_m = lipsync_report([f.image for f in frames], [f.audio for f in frames], fps=25)
    rep_a = lipsync_report([f.image for f in frames2], [f.audio for f in frames2], fps=25)
    # same audio, same mouth box: "a" opens much wider than "m"
    from cvi_lab.metrics.lipsync import find_mouth_box, mouth_openness

    box = find_mouth_box(frames[0].image)
    om = mouth_openness([f.image for f in frames + frames2], box)
    assert om[len(frames):].max() > 2.0 * om[: len(frames)].max()
    assert rep_a.peak_corr > 0.5


def test_greenscreen_exact(astronaut_replica, speech_chunks):
    r, frames = _render(astronaut_replica, speech_chunks[:1], apply_greenscreen=True, seed=3)
    mask = cv2.imread(str(astronaut_replica / "mask.png"), cv2.IMREAD_GRAYSCALE)
    mask = cv2.resize(mask, (512, 512), interpolation=cv2.INTER_NEAREST) > 0
    margin = np.ones((15, 15), np.uint8)  # sway moves the person a few pixels
    background = ~cv2.dilate(mask.astype(np.uint8), margin).astype(bool)
    person = cv2.erode(mask.astype(np.uint8), margin).astype(bool)
    for f in frames[::7]:
        chk = greenscreen_check(f.image, background, person)
        assert chk["background_exact"] and chk["person_key_px"] == 0, chk
    # and no person pixel anywhere is exactly the key: key pixels form the background only
    key = np.all(frames[10].image == np.array([0, 255, 155], np.uint8), axis=-1)
    assert not key[person].any() and key[background].all()


def test_idle_not_frozen_and_blinks(astronaut_replica):
    r = PortraitRenderer(replica_dir=astronaut_replica, render_in_thread=False, seed=1, width=256, height=256)
    frames = [r.next_frame() for _ in range(150)]  # 6 s of listening
    assert all(not f.speaking and len(f.audio) == 882 and not f.audio.any() for f in frames)
    stats = idle_motion([f.image for f in frames])
    assert stats["frozen_pairs"] == 0, stats
    # the mouth stays closed while idle (the metric sees no dark inner mouth appear)
    from cvi_lab.metrics.lipsync import find_mouth_box, mouth_openness

    op = mouth_openness([f.image for f in frames], find_mouth_box(frames[0].image))
    assert op.max() < 0.03
    # blinks: some frames differ from their neighbours far more in the eye band than elsewhere
    eye_band = [f.image[int(0.2 * 256) : int(0.35 * 256)].astype(np.int16) for f in frames]
    d = np.array([np.abs(a - b).mean() for a, b in zip(eye_band[:-1], eye_band[1:])])
    assert d.max() > 3 * np.median(d)


def test_deterministic_for_a_seed(astronaut_replica, speech_chunks):
    a = _render(astronaut_replica, speech_chunks[:1], seed=5)[1]
    b = _render(astronaut_replica, speech_chunks[:1], seed=5)[1]
    c = _render(astronaut_replica, speech_chunks[:1], seed=6)[1]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert any(not np.array_equal(x.image, y.image) for x, y in zip(a, c))


def test_clear_closes_mouth_next_frame(astronaut_replica, speech_chunks):
    from cvi_lab.metrics.lipsync import find_mouth_box, mouth_openness

    r = PortraitRenderer(replica_dir=astronaut_replica, render_in_thread=False)
    idle = r.next_frame()
    r.push_audio(speech_chunks[0])
    talking = [r.next_frame() for _ in range(12)]
    r.clear()
    after = r.next_frame()
    assert not after.speaking and not after.audio.any() and r.queued_seconds == 0
    assert after.interrupted and not any(f.interrupted for f in talking)  # tells the transport to cut its queue
    assert not r.next_frame().interrupted  # only the first frame after the clear
    op = mouth_openness([idle.image] + [f.image for f in talking] + [after.image], find_mouth_box(idle.image))
    assert op[1:-1].max() > 0.05
    assert op[-1] < 0.2 * op[1:-1].max()


def test_resamples_other_rates(astronaut_replica, speech_chunks):
    from cvi_lab.audio import resample

    c = speech_chunks[0]
    r = PortraitRenderer(replica_dir=astronaut_replica, render_in_thread=False, audio_rate=16000, width=256, height=256)
    frames = r.render_offline([c], pad_s=0.2)
    assert all(len(f.audio) == 640 and f.audio_rate == 16000 for f in frames)
    got = np.concatenate([f.audio for f in frames])
    assert abs(np.abs(got).sum() - np.abs(resample(c.samples, c.sample_rate, 16000)).sum()) < 1e-2


def test_non_square_and_small_sizes(astronaut_replica, speech_chunks):
    r = PortraitRenderer(replica_dir=astronaut_replica, render_in_thread=False, width=320, height=240, fps=30)
    frames = r.render_offline(speech_chunks[:1], pad_s=0.1)
    assert frames[0].image.shape == (240, 320, 3)
    # 22050/30 = 735 samples per frame
    assert {len(f.audio) for f in frames} == {735}


async def test_realtime_frames_iterator(astronaut_replica, speech_chunks):
    r = PortraitRenderer(replica_dir=astronaut_replica, width=128, height=128)
    assert isinstance(r, AvatarRenderer)
    got = []
    it = r.frames()
    async for f in it:
        got.append(f)
        if len(got) == 3:
            r.push_audio(speech_chunks[0])
        if len(got) == 10:
            break
    await it.aclose()
    assert [round(f.pts, 3) for f in got] == [round(i / 25, 3) for i in range(10)]
    assert not got[0].speaking and got[4].speaking


def test_hydra_configs_instantiate(astronaut_replica):
    from hydra.utils import instantiate

    from cvi_lab.config import load_group

    cfg, cfg256 = load_group("avatar", "portrait"), load_group("avatar", "portrait_256")
    r = instantiate(cfg, replica_dir=str(astronaut_replica), apply_greenscreen=True, seed=2)
    assert isinstance(r, PortraitRenderer) and r.apply_greenscreen and r.seed == 2 and r.width == 512
    r256 = instantiate(cfg256, replica_dir=str(astronaut_replica), apply_greenscreen=False, seed=0)
    assert (r256.width, r256.height, r256.fps) == (256, 256, 25)
    assert r256.next_frame().image.shape == (256, 256, 3)


def test_missing_replica_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not a completed replica"):
        PortraitRenderer(replica_dir=tmp_path)
