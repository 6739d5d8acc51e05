"""Scenario lines: what a scripted participant does that breaks calls, and what the replica should do then.

Why its own module: the dataset format (`dataset.py`) carries the utterances; this module says what the
scenario fields mean, checks them, and renders the audio they need beyond plain speech: a pause of
`pause_ms` at every "..." of the text, and non-speech sounds (a cough, a noise burst) made from a fixed seed,
so the same line always gives the same samples. A real recording (`audio`) is used as is with the same
fields, so recorded scenarios are judged by the same expectations.

Scenario fields of a dataset line (all optional):
  phenomenon (str)   one of PHENOMENA: what the line tests
  pause_ms (int)     silence spoken at each "..." in `text` (400-1200 ms mid-utterance pauses)
  sound (str)        one of SOUNDS: the line is this sound, not speech (`text` may then be empty)
  expect (object)    what should happen; keys in EXPECT_KEYS:
     take_turn (bool)      the replica should answer this line (false: a backchannel, a cough)
     hold (bool)           the replica must not answer before the line ends (no cut-off at its pauses)
     replica_stops (bool)  for a line spoken over the replica (`barge_in_after_s`): it must stop (true)
                           or keep talking (false)
     answer (str)          the expected answer's key fact: answer_check.py and the judge's correctness score
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

SAMPLE_RATE = 16_000
PHENOMENA = ("plain", "mid_pause", "trailing_off", "backchannel", "interruption", "cough", "noise_burst",
             "one_word", "quick_follow_up")
SOUNDS = ("cough", "noise")
EXPECT_KEYS: dict[str, type] = {"take_turn": bool, "hold": bool, "replica_stops": bool, "answer": str}
PAUSE_MARK = "..."
PAUSE_RANGE_MS = (0, 5000)
EDGE_DBFS = -45.0  # speech edges: the synthesized part is trimmed to its first/last frame above this level


class ScenarioError(ValueError):
    """A scenario field is malformed; the message names the field and what is accepted."""


@dataclass(frozen=True)
class Expect:
    """What the replica should do with one line."""

    take_turn: bool = True
    hold: bool = False
    replica_stops: bool | None = None
    answer: str | None = None


def parse_expect(value: Any) -> Expect:
    if value is None:
        return Expect()
    if not isinstance(value, Mapping):
        raise ScenarioError(f"'expect' must be an object with keys {sorted(EXPECT_KEYS)}")
    unknown = set(value) - set(EXPECT_KEYS)
    if unknown:
        raise ScenarioError(f"'expect' has unknown key(s) {sorted(unknown)}; accepted: {sorted(EXPECT_KEYS)}")
    for key, typ in EXPECT_KEYS.items():
        if key in value and value[key] is not None and not isinstance(value[key], typ):
            raise ScenarioError(f"'expect.{key}' must be a {typ.__name__}")
    return Expect(**dict(value))


def check_fields(row: Mapping[str, Any]) -> None:
    """Validate the scenario fields of one dataset line (raises ScenarioError)."""
    ph = row.get("phenomenon")
    if ph is not None and ph not in PHENOMENA:
        raise ScenarioError(f"'phenomenon' {ph!r} is not known; accepted: {', '.join(PHENOMENA)}")
    pause = row.get("pause_ms")
    if pause is not None:
        if not isinstance(pause, int) or isinstance(pause, bool) or not PAUSE_RANGE_MS[0] <= pause <= PAUSE_RANGE_MS[1]:
            raise ScenarioError(f"'pause_ms' must be an integer from {PAUSE_RANGE_MS[0]} to {PAUSE_RANGE_MS[1]}")
        if PAUSE_MARK not in str(row.get("text") or ""):
            raise ScenarioError(f"'pause_ms' is set but 'text' has no {PAUSE_MARK!r} where the pause goes")
    sound = row.get("sound")
    if sound is not None and sound not in SOUNDS:
        raise ScenarioError(f"'sound' {sound!r} is not known; accepted: {', '.join(SOUNDS)}")
    parse_expect(row.get("expect"))


def render(text: str, pause_ms: int | None, sound: str | None, seed_text: str,
           speak: Callable[[str], np.ndarray]) -> np.ndarray:
    """The line's audio at 16 kHz: `sound`, or `speak(text)` with exact pauses at each "..." when `pause_ms`."""
    if sound is not None:
        return make_sound(sound, _seed(seed_text))
    if pause_ms is None:
        return speak(text)
    parts = [p.strip() for p in text.split(PAUSE_MARK) if p.strip()]
    gap = np.zeros(int(pause_ms * SAMPLE_RATE / 1000), np.float32)
    out: list[np.ndarray] = []
    for i, part in enumerate(parts):
        clip = trim(speak(part))
        out += [gap, clip] if i else [clip]
    return np.concatenate(out).astype(np.float32)


def trim(pcm: np.ndarray, frame: int = 320) -> np.ndarray:
    """Cut the silence before the first and after the last frame above EDGE_DBFS (so a pause is exact)."""
    x = np.asarray(pcm, np.float32)
    n = len(x) // frame
    if n == 0:
        return x
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(rms) > EDGE_DBFS)
    if len(loud) == 0:
        return x
    return x[loud[0] * frame: (loud[-1] + 1) * frame]


def make_sound(kind: str, seed: int) -> np.ndarray:
    """Deterministic non-speech: "cough" = two short band-limited bursts with a fast decay; "noise" = a
    0.4 s broadband burst (a dropped object, a door). Surrounded by 0.1 s of silence."""
    rng = np.random.default_rng(seed)
    pad = np.zeros(SAMPLE_RATE // 10, np.float32)
    if kind == "cough":
        bursts = []
        for dur in (0.22, 0.16):
            n = int(dur * SAMPLE_RATE)
            noise = rng.standard_normal(n)
            smooth = np.convolve(noise, np.ones(4) / 4, mode="same")  # darker than white noise, like breath
            env = np.minimum(np.arange(n) / (0.01 * SAMPLE_RATE), 1.0) * np.exp(-np.arange(n) / (0.06 * SAMPLE_RATE))
            bursts += [0.5 * smooth * env, np.zeros(int(0.08 * SAMPLE_RATE))]
        body = np.concatenate(bursts)
    elif kind == "noise":
        n = int(0.4 * SAMPLE_RATE)
        env = np.exp(-np.arange(n) / (0.12 * SAMPLE_RATE))
        body = 0.4 * rng.standard_normal(n) * env
    else:
        raise ScenarioError(f"sound {kind!r} is not known; accepted: {', '.join(SOUNDS)}")
    return np.concatenate([pad, np.clip(body, -1, 1).astype(np.float32), pad])


def _seed(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
