"""TTS backends: `piper` (neural, joe en_US voice shipped in pip; default) and `espeak` (espeak-ng, many languages)."""
