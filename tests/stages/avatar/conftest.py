"""Shared fixtures for the avatar tests: one built astronaut replica and real Piper speech per session."""

import pathlib

import numpy as np
import pytest

from cvi_lab.stages.avatar.replica_builder import BUILTIN_ASTRONAUT, build_replica


@pytest.fixture(scope="session")
def astronaut_replica(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("replica") / "astronaut"
    build_replica(BUILTIN_ASTRONAUT, out)
    return out


@pytest.fixture(scope="session")
def speech_chunks():
    """Real TTS audio with a pause between two sentences (Piper gives one chunk per sentence)."""
    from cvi_lab.stages.avatar.preview import synthesize

    chunks = synthesize("Hello there, how is it going today? I am the replica, and papa bought new moon boots.")
    assert chunks and all(len(c.samples) > 0 for c in chunks)
    return chunks


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())
