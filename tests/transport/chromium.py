"""Debian chromium for the meeting-page tests: headless, the microphone a WAV file, no network chatter."""

from __future__ import annotations

import os
import pathlib
import shutil

import pytest

CHROMIUM = os.environ.get("CVI_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

requires_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"Debian chromium not found at {CHROMIUM}; run scripts/ensure_system_deps.sh"
)


def launch_args(microphone_wav: pathlib.Path) -> list[str]:
    """Chromium flags: fake camera, `microphone_wav` as the microphone (looped), autoplay allowed."""
    return [
        "--no-sandbox",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone_wav}",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
