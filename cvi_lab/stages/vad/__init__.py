"""Voice activity detection backends: `silero` (packaged ONNX model, default) and `energy` (baseline)."""
