"""Language routing: which ASR (and language code) and which TTS voice serve a conversation's language.

The table is configuration (`cvi_lab/conf/languages/default.yaml`); this module only reads it, so adding a language
is a YAML edit. "multilingual" routes ASR to a detecting model and picks the TTS route per detected code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


class UnsupportedLanguageError(ValueError):
    """The requested language has no route; the message lists the supported ones."""


@dataclass(frozen=True)
class LanguageRoute:
    name: str  # full lowercase name, e.g. "english"
    code: str | None  # ISO 639-1 code; None = detect per utterance
    asr: str  # cvi_lab/conf/asr/<asr>.yaml
    tts: str | None  # cvi_lab/conf/tts/<tts>.yaml; None = chosen per detected language
    tts_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def detect(self) -> bool:
        return self.code is None


class LanguageTable:
    def __init__(self, table: Mapping[str, Mapping[str, Any]]) -> None:
        self._routes: dict[str, LanguageRoute] = {}
        for name, row in table.items():
            self._routes[str(name).lower()] = LanguageRoute(
                name=str(name).lower(),
                code=row.get("code"),
                asr=str(row["asr"]),
                tts=row.get("tts"),
                tts_overrides=dict(row.get("tts_overrides") or {}),
            )

    def supported(self) -> list[str]:
        return sorted(self._routes)

    def resolve(self, name: str) -> LanguageRoute:
        key = (name or "").strip().lower()
        if key not in self._routes:
            raise UnsupportedLanguageError(
                f"language {name!r} is not supported; supported: {', '.join(self.supported())}"
            )
        return self._routes[key]

    def for_code(self, code: str) -> LanguageRoute:
        """The speaking route for a detected ISO code (multilingual); falls back to english."""
        for route in self._routes.values():
            if route.code == code and route.tts:
                return route
        return self.resolve("english")
