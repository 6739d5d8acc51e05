"""`cvi-lab model-server`: our own local stages behind OpenAI's HTTP API, so a GPU host runs the models and
call hosts stay light (they point `asr=openai_compatible`, `tts=openai_compatible`, `llm=openai_compatible`
at it). Routes: `POST /v1/audio/transcriptions` (the asr stage), `POST /v1/audio/speech` (the tts stage,
streamed), `POST /v1/chat/completions` (the llm stage, SSE when `stream`), `GET /v1/models`, `GET /health`.
The request and response shapes are OpenAI's; README "Stages on other machines" lists what is honoured.
"""
