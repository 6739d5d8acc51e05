"""LLM backends: `hf_causal` (local transformers model, default SmolLM2 GGUF) and `openai_compatible` (HTTP)."""
