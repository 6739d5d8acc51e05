"""Speech recognition backends: faster-whisper (tiny.en default, base multilingual), pocketsphinx, HF whisper."""
