"""Embedding retrieval with all-MiniLM-L6-v2: passages and each user turn as sentence vectors, ranked by cosine.

Why beside BM25: a question and the passage that answers it often share no rare word ("When do you open?" /
"Doors are unlocked at nine."); a sentence embedding finds the paraphrase. The model (22 M parameters, 384
dimensions) ships in a pip package (`cvi_lab.assets.minilm_dir`), runs on CPU through transformers, and is
deterministic: the same passages and query give the same ranking.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping, Sequence

import numpy as np

from cvi_lab import assets
from cvi_lab.stages.base import run_blocking
from cvi_lab.stages.retrieval import Limits, Passage, within_limits


class EmbeddingIndex:
    def __init__(self, retriever: "EmbeddingRetriever", passages: Sequence[Passage]) -> None:
        self.retriever, self.passages = retriever, list(passages)
        self.vectors = retriever.embed([p.text for p in self.passages])

    def search(self, query: str, limits: Limits) -> list[Passage]:
        if not self.passages or not query.strip():
            return []
        scores = self.vectors @ self.retriever.embed([query])[0]
        order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
        ranked = [self.passages[i] for i in order if scores[i] >= self.retriever.min_similarity]
        return within_limits(ranked, limits)


class EmbeddingRetriever:
    def __init__(self, heading: str, min_similarity: float, batch_size: int, max_tokens: int,
                 strategies: Mapping[str, Mapping[str, Any]]) -> None:
        self.heading, self.min_similarity = heading, float(min_similarity)
        self.batch_size, self.max_tokens = int(batch_size), int(max_tokens)
        self.strategies = {name: Limits(int(v["passages"]), int(v["max_chars"])) for name, v in strategies.items()}
        self._model: Any = None
        self._tokenizer: Any = None
        self._torch: Any = None
        self._lock = threading.RLock()  # one load, one forward pass at a time: calls share the model

    async def warmup(self) -> None:
        await run_blocking(self._load)

    def _load(self) -> None:
        with self._lock:  # two calls indexing at once load the model once
            if self._model is not None:
                return
            import torch
            from transformers import AutoModel, AutoTokenizer

            path = assets.minilm_dir()
            self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self._model = AutoModel.from_pretrained(path, local_files_only=True).eval()
            self._torch = torch

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors (mean of the token states, as sentence-transformers pools this model), one row a text."""
        self._load()
        torch = self._torch
        rows = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self._tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                                        max_length=self.max_tokens, return_tensors="pt")
                states = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
                pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                rows.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
        return np.concatenate(rows) if rows else np.zeros((0, 384), np.float32)

    def index(self, passages: Sequence[Passage]) -> EmbeddingIndex:
        return EmbeddingIndex(self, passages)

    def limits(self, strategy: str) -> Limits:
        if strategy not in self.strategies:
            raise KeyError(f"retrieval strategy {strategy!r} is not configured; known: {', '.join(self.strategies)}")
        return self.strategies[strategy]
