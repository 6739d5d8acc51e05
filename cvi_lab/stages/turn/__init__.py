"""End-of-turn backends: `smart_turn_v3` (ONNX model shipped in pipecat-ai, default) and `silence` (baseline)."""
