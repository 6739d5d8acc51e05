"""What every embedded (in-process) decoder shares: model resolution, the chat template, context trimming,
one worker thread per model, token → text streaming, stop-within-one-token, and the opener guard.

Why one base: the backends (`hf_causal` with transformers, `ct2_causal` with CTranslate2) differ only in how
they turn prompt token ids into next tokens and how they keep the prompt prefix's state between calls.
Everything a caller can observe (message validation, errors, stats, cancellation, the text pieces) is
written once here, so switching the backend in `cvi_lab/conf/llm/` changes speed, not behaviour.

Opener guard: small instruction-tuned models fall into one template ("I'm so sorry for any confusion ...")
within a few turns. With `opener_guard_words: N`, the token sequence of the first N words of every earlier
assistant answer in the prompt is banned at the start of the new answer, so no two answers of a call open
with the same N words; the rest of the answer is free.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Generator, Mapping, Sequence

from cvi_lab import assets
from cvi_lab.stages.base import LLM, ChatMessage, LLMStats, ModelMissingError, StageInputError
from cvi_lab.stages.llm.messages import check_max_tokens, normalize_messages

log = logging.getLogger(__name__)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class LocalCausalLLM(LLM, abc.ABC):
    """Base of the embedded decoders. Subclasses implement `_load_model(path)` and `_tokens(...)`."""

    who = "LocalCausalLLM"

    def __init__(
        self,
        model: str | None,
        max_new_tokens: int,
        temperature: float,
        top_k: int,
        top_p: float,
        repetition_penalty: float,
        seed: int,
        prefix_cache: bool,
        max_context_tokens: int | None,
        warmup_system_prompt: str | None,
        opener_guard_words: int,
    ) -> None:
        if temperature < 0:
            raise StageInputError(f"{self.who}: temperature {temperature} is not accepted; use >= 0 (0 = greedy)")
        if not 0.0 < top_p <= 1.0:
            raise StageInputError(f"{self.who}: top_p {top_p} is not accepted; use a value in (0, 1]")
        if not isinstance(opener_guard_words, int) or opener_guard_words < 0:
            raise StageInputError(f"{self.who}: opener_guard_words {opener_guard_words!r} is not accepted; use an integer >= 0 (0 = off)")
        self.model_name = model
        self.max_new_tokens = check_max_tokens(max_new_tokens, max_new_tokens, self.who)
        self.temperature = float(temperature)
        self.top_k = int(top_k or 0)
        self.top_p = float(top_p)
        self.repetition_penalty = float(repetition_penalty or 1.0)
        self.seed = int(seed)
        self.prefix_cache = bool(prefix_cache)
        self.max_context_tokens = max_context_tokens
        self.warmup_system_prompt = warmup_system_prompt
        self.opener_guard_words = opener_guard_words
        self._tok = None
        self._eos: set[int] = set()
        self._max_positions = 2048
        self._loaded = False
        self._load_lock = threading.Lock()
        # One thread per model (one prompt-state cache, generations one after another) unless the backend
        # decodes several answers together (`_stream_threads`).
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=self._stream_threads(), thread_name_prefix="cvi-llm")

    def _stream_threads(self) -> int:
        """Answers this model streams at once (threads of `_worker`); 1: one after another."""
        return 1

    # ------------------------------------------------------------ subclass hooks
    @abc.abstractmethod
    def _load_model(self, hf_dir: str) -> None:
        """Load weights from a transformers-format directory (or hub id in the local cache); set `_max_positions`."""

    @abc.abstractmethod
    def _tokens(self, prompt_ids: list[int], max_new: int, banned: list[list[int]], stats: LLMStats) -> Generator[int, None, None]:
        """Next token ids for `prompt_ids`, one at a time (the consumer stops by closing the generator). Fills
        `stats.cached_prompt_tokens`. `banned`: token sequences the answer must not start with."""

    def _prefill_only(self, ids: list[int]) -> None:
        """Bring the prompt-state cache to `ids` without generating (priming). Default: nothing to keep."""

    def _drop_cache(self) -> None:
        """Forget any prompt-state cache."""

    # ------------------------------------------------------------ loading
    def _resolve(self) -> tuple[str, bool]:
        """(path or hub id, local dir?) of the transformers-format model to load."""
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
                f"{self.who}: {p} is not a model directory (no config.json, and not exactly one .gguf file in it)"
            )
        if p.is_absolute() or str(name).startswith((".", "~")) or p.suffix == ".gguf" or str(name).count("/") > 1:
            raise ModelMissingError(
                f"{self.who}: model {name!r} does not exist; give a local model directory, a .gguf file, "
                "a hub id already in the local Hugging Face cache, or null for the shipped SmolLM2"
            )
        return str(name), False  # hub id: only from the local HF cache

    def _load(self) -> None:
        with self._load_lock:
            if self._loaded:
                return
            from transformers import AutoTokenizer

            path, _ = self._resolve()
            try:
                tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
                self._load_model(path)
            except (OSError, ValueError) as exc:
                raise ModelMissingError(
                    f"{self.who}: cannot load model {self.model_name!r} from local files ({exc}); models are never "
                    "downloaded at run time: give a local directory / .gguf file, or pre-fetch the hub id"
                ) from exc
            if not tok.chat_template:
                raise StageInputError(
                    f"{self.who}: model {path} has no chat template; use an instruction-tuned model with one"
                )
            self._eos = self._eos_ids(path, tok)
            if self.max_context_tokens:
                self._max_positions = int(self.max_context_tokens)
            self._tok = tok
            self._loaded = True
            log.info("%s loaded %s", self.who, path)

    @staticmethod
    def _eos_ids(path: str, tok) -> set[int]:
        from transformers import GenerationConfig

        eos: set[int] = set()
        try:
            sources = [GenerationConfig.from_pretrained(path, local_files_only=True).eos_token_id, tok.eos_token_id]
        except OSError:  # no generation_config.json
            sources = [tok.eos_token_id]
        for src in sources:
            if isinstance(src, int):
                eos.add(src)
            elif src:
                eos.update(int(x) for x in src)
        return eos

    async def warmup(self, system_prompt: str | None = None) -> None:
        """Load, run one tiny generation, and prime the prompt cache with the system prompt if one is known."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._worker, self._load)
        sys_prompt = system_prompt or self.warmup_system_prompt
        msgs = [ChatMessage("system", sys_prompt)] if sys_prompt else []
        async for _ in self.stream(msgs + [ChatMessage("user", "Hi")], max_tokens=1):
            pass
        if sys_prompt:
            await self.prime([ChatMessage("system", sys_prompt)])

    async def prime(self, messages: Sequence[ChatMessage]) -> None:
        """Pre-compute the prompt state of `messages` (the prefix of the next call) on the model's thread."""
        if not self.prefix_cache or not messages:
            return
        msgs = normalize_messages(messages, self.who, allow_system_only=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._worker, self._prime_sync, msgs)

    def _prime_sync(self, msgs: list[dict[str, str]]) -> None:
        self._load()
        text = self._tok.apply_chat_template(msgs, tokenize=False)
        self._prefill_only(list(self._tok(text, add_special_tokens=False)["input_ids"]))

    def reset_cache(self) -> None:
        """Forget the prompt cache (the next call prefills its whole prompt), e.g. between conversations."""
        self._worker.submit(self._drop_cache)  # queued behind any running generation, before the next one

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
                    f"{self.who}: prompt of {len(ids)} tokens + {max_new} new tokens exceeds the model's context "
                    f"of {self._max_positions} tokens; shorten the system prompt or the last message"
                )
            log.warning("%s: context full, dropping the oldest turn", self.who)
            msgs = msgs[:first] + msgs[first + 1 :]

    def _openers(self, msgs: list[dict[str, str]]) -> list[list[int]]:
        """Token ids of the first `opener_guard_words` words of each earlier assistant answer (deduplicated)."""
        n = self.opener_guard_words
        if n <= 0:
            return []
        seqs: dict[tuple[int, ...], None] = {}
        for m in msgs:
            words = m["content"].split()
            if m["role"] == "assistant" and len(words) >= n:
                ids = self._tok(" ".join(words[:n]), add_special_tokens=False)["input_ids"]
                if ids:
                    seqs[tuple(ids)] = None
        return [list(s) for s in seqs]

    def _decode(self, ids: list[int]) -> str:
        # no clean-up of spaces: decoding a prefix of the tokens then gives a prefix of the full text
        return self._tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    # ------------------------------------------------------------ generation (worker thread)
    def _generate(
        self, msgs: list[dict[str, str]], max_new: int, stop: threading.Event, emit: Callable[[str, Any], None],
        stats: LLMStats, t0: float,
    ) -> None:
        try:
            stats.queue_wait_s = time.perf_counter() - t0  # behind other answers on this model's thread
            self._load()
            prompt_ids = self._prompt_ids(msgs, max_new)
            stats.prompt_tokens = len(prompt_ids)
            generated: list[int] = []
            sent = ""
            tokens = self._tokens(prompt_ids, max_new, self._openers(msgs), stats)
            try:
                for token in tokens:
                    if stop.is_set() or token in self._eos:
                        break
                    generated.append(token)
                    stats.completion_tokens = len(generated)
                    text = self._decode(generated)
                    if len(text) > len(sent) and not text.endswith("\ufffd"):  # hold back partial UTF-8
                        if stats.first_token_s is None:
                            stats.first_token_s = time.perf_counter() - t0
                        emit("text", text[len(sent) :])
                        sent = text
                    if len(generated) >= max_new or stop.is_set():
                        break
            finally:
                tokens.close()  # run the generator's clean-up now, on this thread
            tail = self._decode(generated)[len(sent) :] if generated and not stop.is_set() else ""
            if tail:  # text held back at the very end (a lone partial character)
                emit("text", tail)
            if not self.prefix_cache:
                self._drop_cache()
            stats.total_s = time.perf_counter() - t0
            emit("done", None)
        except BaseException as exc:  # handed to the consumer, raised there
            emit("error", exc)

    async def stream(
        self, messages: Sequence[ChatMessage], max_tokens: int | None = None, stats: LLMStats | None = None
    ) -> AsyncIterator[str]:
        """Text pieces as they are decoded; closing/cancelling the consumer stops after the current token."""
        t0 = time.perf_counter()
        msgs = normalize_messages(messages, self.who)
        max_new = check_max_tokens(max_tokens, self.max_new_tokens, self.who)
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
            stop.set()  # cancelled / closed early: the worker stops before its next token
