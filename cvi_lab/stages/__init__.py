"""Swappable pipeline stages (VAD, end-of-turn, ASR, LLM, TTS, avatar); interfaces live in `base.py`."""
