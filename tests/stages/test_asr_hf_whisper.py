"""HF transformers Whisper backend: no weights ship in pip, so it is tested for clear errors and, end to
end, on a tiny random-weight Whisper built offline (checks the plumbing, not the accuracy)."""

from __future__ import annotations

import numpy as np
import pytest
from hydra.utils import instantiate

from cvi_lab.stages.asr.hf_whisper import HFWhisperASR
from cvi_lab.stages.base import ModelMissingError, StageInputError
from tests.stages.conftest import stage_conf


@pytest.fixture(scope="module")
def tiny_random_whisper(tmp_path_factory):
    """A 2-layer random Whisper with the real multilingual tokenizer (from the shipped whisper-base files)."""
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    from cvi_lab import assets

    tok = WhisperTokenizerFast(tokenizer_file=str(assets.locate("whisper_base_part1").parent / "tokenizer.json"))
    ids = tok.convert_tokens_to_ids
    cfg = WhisperConfig(
        vocab_size=51865, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
        max_target_positions=64, decoder_start_token_id=ids("<|startoftranscript|>"),
        eos_token_id=ids("<|endoftext|>"), pad_token_id=ids("<|endoftext|>"), bos_token_id=ids("<|endoftext|>"),
    )  # fmt: skip
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(cfg)
    gen = model.generation_config
    gen._from_model_config = False  # else from_pretrained rebuilds it from the model config and drops these
    gen.is_multilingual = True
    gen.lang_to_id = {f"<|{c}|>": ids(f"<|{c}|>") for c in ("en", "es", "fr", "de")}
    gen.task_to_id = {"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")}
    gen.no_timestamps_token_id = ids("<|notimestamps|>")
    out = tmp_path_factory.mktemp("tiny-whisper")
    model.save_pretrained(out)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tok).save_pretrained(out)
    return out


def test_conf_builds():
    asr = instantiate(stage_conf("asr", "hf_whisper"))
    assert isinstance(asr, HFWhisperASR) and asr.local_files_only and asr.languages == ("en",)


async def test_missing_local_path_is_a_clear_error(tmp_path):
    asr = HFWhisperASR(model=str(tmp_path / "no-such-whisper"))
    with pytest.raises(ModelMissingError, match="does not exist.*save_pretrained"):
        await asr.warmup()


async def test_hub_id_not_in_cache_is_a_clear_error_without_download(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    asr = HFWhisperASR(model="openai/whisper-tiny.en")
    with pytest.raises(ModelMissingError, match="cannot load 'openai/whisper-tiny.en' offline"):
        await asr.warmup()


async def test_runs_end_to_end_on_a_tiny_local_model(tiny_random_whisper, synthesize):
    asr = HFWhisperASR(model=str(tiny_random_whisper), max_new_tokens=8)
    await asr.warmup()
    assert {"en", "es", "*"} <= set(asr.languages)
    t = await asr.transcribe(synthesize("Hello there."))
    assert isinstance(t.text, str) and t.language in {"en", "es", "fr", "de"} and 0 < t.language_probability <= 1
    forced = await asr.transcribe(synthesize("Hello there."), language="fr")
    assert forced.language == "fr"
    assert (await asr.transcribe(np.zeros(16_000, np.float32))).text == ""
    with pytest.raises(StageInputError, match="language 'ja'.*accepted ISO codes: de, en, es, fr"):
        await asr.transcribe(np.zeros(16_000, np.float32), language="ja")
    with pytest.raises(StageInputError, match="22050 Hz"):
        await asr.transcribe(np.zeros(22_050, np.float32), sample_rate=22_050)
