"""One live conversation: turn taking, streaming answers, barge-in, greeting, interactions, latency spans.

Modules, in the order a turn flows through them:
- `pipeline_config`: persona layers + language + Hydra defaults -> stage configs and `EngineSettings`
  (defaults and sensitivity tables in `cvi_lab/conf/engine/default.yaml`);
- `stage_pool`: loaded stages shared across conversations (VAD and avatar per conversation);
- `turns`: listening side (VAD -> ASR ∥ end-of-turn -> committed user turns);
- `engine`: `ConversationEngine`, which composes the parts below and decides between them (answer, barge-in,
  speculative answers, the data-channel protocol that `interactions` validates);
- `prompt`: the ONE system message (`system_message`) and the history window; `tools`: the tool-call convention;
- `answering`: LLM stream -> `chunker` (speakable clauses, the first one early) -> the speaker;
- `speaker`: TTS -> avatar, speech lifecycle and barge-in; `speech`: speeches, clauses and the heard-audio ledger;
- `echo`: `conversation.echo` streams (text or audio spoken through the replica);
- `frame_pump`: the avatar's paced frames to every consumer; `events`: the event bus and the calls layer's sinks;
- `latency`: the per-turn record stored through `record_turn`;
- `endpoint` / `runtime` / `factory`: how the transport and the calls layer get an engine;
- `offline`: a scripted participant without WebRTC (tests, lab; `python -m cvi_lab.engine.offline`);
  `recording`: the call's MP4.
"""
