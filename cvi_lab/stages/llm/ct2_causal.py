"""Embedded causal LM on CTranslate2 (int8): the fast CPU path for Llama-family decoders such as SmolLM2.

Why: transformers decodes SmolLM2-135M at ~18 tok/s on one thread; CTranslate2's int8 kernels are faster
(106-110 tok/s measured on an Intel Xeon with MKL; ~30 tok/s on an AMD EPYC, where it falls back to oneDNN;
see benchmarks/results/llm.md). The model is converted once from the transformers directory
(`convert.ct2_dir`, cached like the GGUF conversion). One instance serves every call of a server (the stage
pool shares it): its answers decode together, up to `max_batch` per step, on one thread (`batching.py`).

Prompt-prefix cache (`prefix_cache`, off by default: with SmolLM2, answers generated on a cached static prompt
are much worse than on a full prefill; measured in benchmarks/results/answers.md): CTranslate2 keeps the decoder state of a `static_prompt` across calls, keyed by its
tokens. `prime(messages)` (the engine calls it after each answer, while the participant speaks) computes
the state of the prompt so far (system message + history) as a static prompt, so the next answer prefills
only the new user turn; an answer decoded alone uses the longest cached static prompt its prompt starts with
(a batch of several answers has one static prompt for all in CTranslate2, so it prefills them in full). Each
cached prompt holds memory (~0.16 MB per token) and CTranslate2 cannot forget one, so after
`max_cached_prompts` the model is reloaded (a fraction of a second, during priming, off the critical path).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Generator, Sequence

from cvi_lab.stages.base import LLMStats, StageInputError
from cvi_lab.stages.llm.batching import END, DecodeBatcher, DecodeRequest
from cvi_lab.stages.llm.local import LocalCausalLLM

log = logging.getLogger(__name__)

COMPUTE_TYPES = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "float32", "float16", "bfloat16", "auto")


class CT2CausalLLM(LocalCausalLLM):
    """Settings mirror `cvi_lab/conf/llm/ct2_causal.yaml`.

    model: as `hf_causal` (None = the shipped SmolLM2-135M-Instruct), converted once to CTranslate2.
    quantization: weights of the converted model (int8 by default).
    compute_type: what CTranslate2 computes in (int8: fastest on CPU).
    threads: intra-op threads of this model only (not process-wide, unlike torch).
    temperature / top_k / top_p / seed / repetition_penalty / opener_guard_words: as `hf_causal`.
    no_repeat_ngram_size: > 0 forbids repeating any n-gram of this size inside one answer.
    max_cached_prompts: static prompts kept before the model is reloaded to free their memory.
    max_batch: answers decoded together per step (1 = one after another).
    max_prompt_skew: largest difference in tokens between answers decoded in one batch.
    """

    who = "CT2CausalLLM"

    def __init__(
        self,
        model: str | None,
        max_new_tokens: int,
        temperature: float,
        top_k: int,
        top_p: float,
        repetition_penalty: float,
        no_repeat_ngram_size: int,
        threads: int,
        seed: int,
        prefix_cache: bool,
        quantization: str,
        compute_type: str,
        max_context_tokens: int | None,
        warmup_system_prompt: str | None,
        opener_guard_words: int,
        max_cached_prompts: int,
        max_batch: int,
        max_prompt_skew: int,
    ) -> None:
        if compute_type not in COMPUTE_TYPES:
            raise StageInputError(f"CT2CausalLLM: compute_type {compute_type!r} is not accepted; use one of {', '.join(COMPUTE_TYPES)}")
        if not isinstance(max_cached_prompts, int) or max_cached_prompts < 1:
            raise StageInputError(f"CT2CausalLLM: max_cached_prompts {max_cached_prompts!r} is not accepted; use an integer >= 1")
        if not isinstance(threads, int) or threads < 1:
            raise StageInputError(f"CT2CausalLLM: threads {threads!r} is not accepted; use an integer >= 1")
        if not isinstance(max_batch, int) or max_batch < 1:
            raise StageInputError(f"CT2CausalLLM: max_batch {max_batch!r} is not accepted; use an integer >= 1")
        if not isinstance(max_prompt_skew, int) or max_prompt_skew < 0:
            raise StageInputError(f"CT2CausalLLM: max_prompt_skew {max_prompt_skew!r} is not accepted; use an integer >= 0")
        self.max_batch = max_batch
        super().__init__(model, max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed, prefix_cache,
                         max_context_tokens, warmup_system_prompt, opener_guard_words)
        self.no_repeat_ngram_size = int(no_repeat_ngram_size or 0)
        self.threads = threads
        self.quantization = quantization
        self.compute_type = compute_type
        self.max_cached_prompts = max_cached_prompts
        self._gen = None
        self._model_dir = ""
        self._static: set[tuple[int, ...]] = set()  # static prompts (token ids) CTranslate2 holds a state for
        self._batcher = DecodeBatcher(self._decode_batch, self._cached_prefix, lambda: self._eos, max_batch, max_prompt_skew)

    def _stream_threads(self) -> int:
        return self.max_batch + 1  # each streaming answer's consumer, and one for priming

    @property
    def batch_sizes(self) -> list[int]:
        """Size of every decode batch run so far (how many answers shared each `generate_batch`)."""
        return self._batcher.batch_sizes

    def _load_model(self, path: str) -> None:
        from transformers import AutoConfig

        from cvi_lab.stages.llm.convert import ct2_dir

        self._model_dir = str(ct2_dir(path, self.quantization))
        self._open()
        self._max_positions = int(AutoConfig.from_pretrained(path, local_files_only=True).max_position_embeddings or 2048)

    def _open(self) -> None:
        import ctranslate2

        self._gen = ctranslate2.Generator(self._model_dir, device="cpu", compute_type=self.compute_type,
                                          intra_threads=self.threads, inter_threads=1)
        self._static = set()

    def _forget(self) -> None:
        self._static = set()

    def _drop_cache(self) -> None:
        # CTranslate2 cannot forget one static prompt; a reset stops using them (the next call prefills all).
        self._batcher.call(self._forget, wait=False)

    def reset_cache(self) -> None:
        self._drop_cache()  # queued on the decoding thread before any answer submitted after this call

    def _prefill_only(self, ids: list[int]) -> None:
        self._batcher.call(lambda: self._prefill_now(ids), wait=True)

    def _prefill_now(self, ids: list[int]) -> None:
        """Compute and cache the decoder state of `ids` (all but its last token) as a static prompt."""
        if len(ids) < 2 or tuple(ids[:-1]) in self._static:
            return
        if len(self._static) >= self.max_cached_prompts:
            self._open()  # frees the states of the older prompts
        toks = self._tok.convert_ids_to_tokens(ids)
        for _ in self._gen.generate_tokens(toks[-1:], static_prompt=toks[:-1], max_length=1, cache_static_prompt=True):
            pass
        self._static.add(tuple(ids[:-1]))

    def _cached_prefix(self, prompt_ids: list[int]) -> int:
        return self._split(prompt_ids) if self.prefix_cache else 0

    def _split(self, prompt_ids: list[int]) -> int:
        """Length of the longest cached static prompt that `prompt_ids` starts with (0: none)."""
        fits = [len(s) for s in self._static if len(prompt_ids) > len(s) and tuple(prompt_ids[: len(s)]) == s]
        return max(fits, default=0)

    def _decode_batch(self, prompts: Sequence[list[int]], max_new: int, banned: list[list[int]],
                      on_token: Callable[[int, int], bool]) -> None:
        """One `generate_batch` over `prompts` (on the batcher's thread); a prompt alone uses its cached prefix."""
        import ctranslate2

        toks = [self._tok.convert_ids_to_tokens(p) for p in prompts]
        split = self._cached_prefix(prompts[0]) if len(prompts) == 1 else 0
        kwargs = {"static_prompt": toks[0][:split], "cache_static_prompt": True} if split else {}
        if banned:
            kwargs["suppress_sequences"] = [self._tok.convert_ids_to_tokens(seq) for seq in banned]
        if self.temperature > 0:
            ctranslate2.set_random_seed(self.seed)  # per call: a run is reproducible for one config and seed
            kwargs.update(sampling_temperature=self.temperature, sampling_topk=self.top_k or 0, sampling_topp=self.top_p)
        else:
            kwargs.update(sampling_topk=1)
        self._gen.generate_batch(
            [t[split:] for t in toks], max_length=max_new, end_token=sorted(self._eos), beam_size=1,
            repetition_penalty=self.repetition_penalty, no_repeat_ngram_size=self.no_repeat_ngram_size,
            include_prompt_in_result=False, callback=lambda step: on_token(step.batch_id, step.token_id), **kwargs,
        )

    def _tokens(self, prompt_ids: list[int], max_new: int, banned: list[list[int]], stats: LLMStats) -> Generator[int, None, None]:
        request = self._batcher.submit(DecodeRequest(prompt_ids, max_new, banned, threading.Event()))
        first = True
        try:
            while True:
                item = request.tokens.get()
                if first:  # the batch that carries it has started
                    first = False
                    stats.cached_prompt_tokens = request.cached_prompt_tokens
                    stats.queue_wait_s = (stats.queue_wait_s or 0.0) + (request.queue_wait_s or 0.0)
                if item is END:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            request.stop.set()  # closed early (cancelled answer): the batch drops it at its next step
