"""Shared test settings: offline hubs, the shared data folder.

Data the project owns (../shared/data, laid beside every clone and CI's) that is missing fails the test that
needs it, naming the path: a skip would hide a broken checkout or CI layout behind a green run."""

import os
import pathlib

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data(name: str) -> pathlib.Path:
    """Path of a file of ../shared/data; fails the calling test, naming the path, when it is missing."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.fail(
            f"shared test data {path} is missing: the project keeps it in ../shared/data beside the clone "
            "(see ../shared/data/README.md)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def jfk_path() -> pathlib.Path:
    """11 s of real human speech (44.1 kHz stereo FLAC), see ../shared/data/README.md."""
    return shared_data("jfk.flac")
