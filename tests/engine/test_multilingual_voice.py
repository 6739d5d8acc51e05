"""Multilingual calls answer with the voice of the language the ASR detected (cvi_lab/conf/languages routes)."""

from cvi_lab.cli import compose_config
from cvi_lab.engine.engine import ConversationSpec
from cvi_lab.engine.factory import create_engine
from cvi_lab.engine.stage_pool import StagePool


async def test_reply_voice_follows_the_detected_language():
    cfg = compose_config([])
    spec = ConversationSpec(conversation_id="c1", system_prompt="x", persona_context="", conversational_context="",
                            custom_greeting=None, pipeline_mode="echo", replica_id=None)
    multi = await create_engine(cfg, spec, language="multilingual", pool=StagePool())
    assert multi.voice_for_language is not None
    assert await multi._reply_voice() is multi.stages.tts  # nothing detected yet: the default voice
    multi.reply_language = "es"
    spanish = await multi._reply_voice()
    assert type(spanish).__name__ == "EspeakTTS" and "es" in str(spanish.voice)
    multi.reply_language = "en"
    assert type(await multi._reply_voice()).__name__ == "PiperTTS"
    multi.reply_language = "xx"  # no route: english
    assert type(await multi._reply_voice()).__name__ == "PiperTTS"

    english = await create_engine(cfg, spec, language="english", pool=StagePool())
    english.reply_language = "es"
    assert english.voice_for_language is None and await english._reply_voice() is english.stages.tts
