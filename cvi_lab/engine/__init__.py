"""One live conversation: turn taking, streaming answers, barge-in, greeting, interactions, latency spans.

Modules, in the order a turn flows through them:
- `pipeline_config`: persona layers + language + Hydra defaults -> stage configs and `EngineSettings`
  (defaults and sensitivity tables in `conf/engine/default.yaml`);
- `stage_pool`: loaded stages shared across conversations (VAD and avatar per conversation);
- `turns`: listening side (VAD -> ASR ∥ end-of-turn -> committed user turns);
- `chunker`: LLM token stream -> speakable clauses (the first one early);
- `engine`: `ConversationEngine`, the speaking side and the data-channel protocol (`interactions` parses it);
- `latency`: the per-turn record stored through `record_turn`;
- `endpoint` / `runtime` / `factory`: how the transport and the calls layer get an engine;
- `offline`: a scripted participant without WebRTC (tests, lab; `python -m cvi_lab.engine.offline`).
"""
