"""Local causal LM with transformers: the reference embedded backend, with a prompt-prefix KV cache.

Why a hand-written decoding loop instead of `generate()` + `TextIteratorStreamer`: we need (1) to stop within
one token when the consumer goes away, and (2) to keep the KV cache of the previous turn and prefill only the
new tail of the next prompt (any common prefix is reused, so a trimmed history costs only what changed).
Streaming, cancellation, trimming and the opener guard are shared with the other embedded backends
(`local.py`); this file holds what is transformers-specific. Slower than `ct2_causal` (~18 tok/s on one
thread), kept as the reference: it runs any transformers model and exposes the logits.
"""

from __future__ import annotations

import inspect
import logging
from typing import Generator

from cvi_lab.stages.base import LLMStats, StageInputError
from cvi_lab.stages.llm.local import LocalCausalLLM, common_prefix

log = logging.getLogger(__name__)


class HFCausalLLM(LocalCausalLLM):
    """Settings mirror `cvi_lab/conf/llm/hf_causal.yaml`.

    model: None = the shipped SmolLM2-135M-Instruct GGUF; else a local directory, a .gguf file, or a hub id
      that is already in the local Hugging Face cache.
    max_new_tokens: default cap per answer (a call's `max_tokens` overrides it).
    temperature: 0 = greedy (deterministic); > 0 samples with `top_k` / `top_p`, seeded with `seed` per call.
    repetition_penalty: > 1 discourages repeating the answer's own tokens (small models loop otherwise).
    threads: torch intra-op threads, set when the model loads (process-wide in torch; not at import).
    prefix_cache: reuse the KV cache of the unchanged prompt prefix across calls.
    dtype: float32 (fastest on most CPUs) or bfloat16.
    opener_guard_words: no answer starts with the first N words of an earlier answer in the prompt (0 = off).
    """

    who = "HFCausalLLM"

    def __init__(
        self,
        model: str | None,
        max_new_tokens: int,
        temperature: float,
        top_k: int,
        top_p: float,
        repetition_penalty: float,
        threads: int | None,
        seed: int,
        prefix_cache: bool,
        dtype: str,
        max_context_tokens: int | None,
        warmup_system_prompt: str | None,
        opener_guard_words: int,
    ) -> None:
        if dtype not in ("float32", "bfloat16", "float16"):
            raise StageInputError(f"HFCausalLLM: dtype {dtype!r} is not accepted; use float32, bfloat16 or float16")
        super().__init__(model, max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed, prefix_cache,
                         max_context_tokens, warmup_system_prompt, opener_guard_words)
        self.threads = threads
        self.dtype = dtype
        self._model = None
        self._cache = None  # DynamicCache holding the KV of `self._cache_ids`
        self._cache_ids: list[int] = []

    def _load_model(self, path: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        if self.threads:
            torch.set_num_threads(int(self.threads))
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, self.dtype), local_files_only=True)
        model.eval()
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._max_positions = int(model.config.max_position_embeddings or 2048)
        self._model = model

    def _drop_cache(self) -> None:
        self._cache, self._cache_ids = None, []

    def _prefill_only(self, ids: list[int]) -> None:
        import torch

        with torch.inference_mode():
            self._prefill(ids)

    def _forward(self, ids: list[int]):
        import torch

        out = self._model(
            input_ids=torch.tensor([ids], dtype=torch.long), use_cache=True, logits_to_keep=1,
            **{self._cache_kw: self._cache},
        )
        return out.logits[0, -1].float()

    def _prefill(self, prompt_ids: list[int]):
        """Bring the KV cache to `prompt_ids` reusing the longest common prefix; returns (logits, reused)."""
        from transformers import DynamicCache

        common = common_prefix(self._cache_ids, prompt_ids) if (self.prefix_cache and self._cache is not None) else 0
        common = min(common, len(prompt_ids) - 1)  # the last prompt token must run to give logits
        if common > 0 and not self._cache.is_croppable:
            common = 0  # e.g. sliding-window layers: a cropped cache would be wrong
        if common <= 0:
            self._cache = DynamicCache(config=self._model.config)
            common = 0
        elif self._cache.get_seq_length() > common:
            # negative = tokens to drop from the end (the only form newer transformers accept; older ones too)
            self._cache.crop(common - self._cache.get_seq_length())
        self._cache_ids = self._cache_ids[:common]
        try:
            logits = self._forward(prompt_ids[common:])
        except BaseException:
            self._drop_cache()
            raise
        self._cache_ids = list(prompt_ids)
        return logits, common

    def _pick(self, logits, generated: list[int], banned: list[list[int]], gen) -> int:
        import torch

        if self.repetition_penalty != 1.0 and generated:
            idx = torch.tensor(sorted(set(generated)), dtype=torch.long)
            vals = logits[idx]
            logits = logits.clone()
            logits[idx] = torch.where(vals > 0, vals / self.repetition_penalty, vals * self.repetition_penalty)
        k = len(generated)
        stops = [seq[k] for seq in banned if len(seq) == k + 1 and seq[:k] == generated]
        if stops:  # this token would complete an earlier answer's opener
            logits = logits.clone()
            logits[torch.tensor(stops, dtype=torch.long)] = float("-inf")
        if self.temperature <= 0:
            return int(torch.argmax(logits))
        logits = logits / self.temperature
        if self.top_k > 0:
            kth = torch.topk(logits, min(self.top_k, logits.numel())).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if self.top_p < 1.0:
            sp, si = torch.sort(probs, descending=True)
            keep = torch.cumsum(sp, 0) - sp < self.top_p
            probs = torch.zeros_like(probs).scatter(0, si[keep], sp[keep])
            probs = probs / probs.sum()
        return int(torch.multinomial(probs, 1, generator=gen))

    def _tokens(self, prompt_ids: list[int], max_new: int, banned: list[list[int]], stats: LLMStats) -> Generator[int, None, None]:
        import torch

        with torch.inference_mode():
            logits, stats.cached_prompt_tokens = self._prefill(prompt_ids)
            gen = torch.Generator().manual_seed(self.seed) if self.temperature > 0 else None
            generated: list[int] = []
            while True:
                token = self._pick(logits, generated, banned, gen)
                generated.append(token)
                yield token  # the consumer closes us here when it has enough (or was cancelled)
                if len(generated) >= max_new:
                    return
                try:
                    logits = self._forward([token])
                except BaseException:
                    self._drop_cache()
                    raise
                self._cache_ids.append(token)
