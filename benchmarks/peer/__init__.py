"""The peer benchmark (`make bench-peer`, benchmarks/bench_peer.py): the same scripted participant against
Pipecat and against cvi-lab, on the same models.

- `pipecat_bot.py`: the Pipecat bot. Runs in Pipecat's own venv (scripts/ensure_pipecat_venv.sh, pinned in
  `requirements-pipecat.txt`), never imported from ours.
- `llm_server.py`: a loopback OpenAI-compatible /v1/chat/completions server in OUR venv that serves cvi-lab's
  configured LLM stage, so Pipecat's OpenAILLMService talks to the very backend cvi-lab's engine uses.
- `participant.py`: cvi-lab's ParticipantClient (same microphone, same recorder, same voiced-sample detection)
  speaking Pipecat's SmallWebRTC signaling and RTVI data-channel messages.
"""
