"""The two vocabularies of the hosted API (SPEC §5): persona/replica (the older one) and PAL/face (today's).

Why one module: every route speaks both, so the name pairs live here once. Request bodies accept either name of a
field (`Aliased` models merge them before validation, refusing both at once); each route answers in its
own vocabulary (`Vocabulary.present`); conversation records carry both id pairs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, create_model, model_validator

# (older name, today's name)
PERSONA_NAMES = (("persona_id", "pal_id"), ("persona_name", "pal_name"), ("default_replica_id", "default_face_id"))
REPLICA_NAMES = (("replica_id", "face_id"), ("replica_name", "face_name"))
CONVERSATION_NAMES = (("persona_id", "pal_id"), ("replica_id", "face_id"))


def both_id_names(record: dict[str, Any]) -> dict[str, Any]:
    """`record` with today's name beside each older id it carries (`replica_id` → also `face_id`, `persona_id` →
    also `pal_id`): how events and webhook payloads name a replica and a persona (SPEC §5: both id pairs)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        out[key] = value
        today = dict(CONVERSATION_NAMES).get(key)
        if today is not None and today not in record:
            out[today] = value
    return out


def merge_aliases(data: Any, pairs: tuple[tuple[str, str], ...]) -> Any:
    """Move each today's-name key onto the older name; a null counts as not given; both names given: refused
    (even with one value: the schema can only say "one of them", and the server does exactly what it says)."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for old, new in pairs:
        if new not in data:
            continue
        value = data.pop(new)
        if value is None:
            continue
        if data.get(old) is not None:
            raise ValueError(f"{old} and {new} name the same field ({new} is today's name); give one of them, "
                             f"not both (got {data[old]!r} and {value!r})")
        data[old] = value
    return data


class Aliased(BaseModel):
    """A request body that takes a field under either of its names (`NAMES`: (older, today's) pairs)."""

    NAMES: ClassVar[tuple[tuple[str, str], ...]] = ()

    @classmethod
    def _pairs(cls) -> list[tuple[str, str]]:
        return [(old, new) for old, new in cls.NAMES if old in cls.model_fields and new in cls.model_fields]

    @model_validator(mode="before")
    @classmethod
    def _one_name_per_field(cls, data: Any) -> Any:
        return merge_aliases(data, tuple(cls._pairs()))

    @classmethod
    def schema_rules(cls) -> list[dict[str, Any]]:
        """In the schema: not both names of a field."""
        given = {"not": {"type": "null"}}
        return [*super().schema_rules(),  # type: ignore[misc]
                *({"not": {"required": [old, new], "properties": {old: given, new: given}}} for old, new in cls._pairs())]


@dataclass(frozen=True)
class Vocabulary:
    """How one family of routes names things: its collection path, its id parameter and its field names."""

    collection: str  # "personas" | "pals" | "replicas" | "faces"
    noun: str  # "persona" | "PAL" | "replica" | "face", for messages
    renames: tuple[tuple[str, str], ...]  # (stored field name, this vocabulary's name); empty for the older one
    words: tuple[tuple[str, str], ...] = ()  # every (older word, today's word) its messages reword

    @property
    def path(self) -> str:
        return f"/v2/{self.collection}"

    def name(self, stored: str) -> str:
        """This vocabulary's name for a stored field."""
        return dict(self.renames).get(stored, stored)

    def present(self, record: dict[str, Any]) -> dict[str, Any]:
        """A stored record (older names) under this vocabulary's names."""
        return {self.name(k): v for k, v in record.items()}

    def say(self, text: str | None) -> str | None:
        """A message written with stored field names, reworded with this vocabulary's (a message that already
        names a today's word, e.g. a conflict between the two names, keeps that pair as written)."""
        for old, new in self.words:
            if text and not re.search(rf"\b{new}\b", text):
                text = re.sub(rf"\b{old}\b", new, text)
        return text


# Today's vocabulary, for messages: fields of both objects, then the nouns ("persona_id" is one word: untouched
# by the noun rules).
TODAY_WORDS = (*PERSONA_NAMES, *REPLICA_NAMES, ("personas", "PALs"), ("persona", "PAL"), ("replicas", "faces"),
               ("replica", "face"))
PERSONAS = Vocabulary("personas", "persona", ())
PALS = Vocabulary("pals", "PAL", PERSONA_NAMES, TODAY_WORDS)
REPLICAS = Vocabulary("replicas", "replica", ())
FACES = Vocabulary("faces", "face", REPLICA_NAMES, TODAY_WORDS)


def renamed_model(model: type[BaseModel], name: str, vocabulary: Vocabulary, doc: str) -> type[BaseModel]:
    """`model` with its fields under `vocabulary`'s names (the response schema of the today's-name routes)."""
    fields: dict[str, Any] = {vocabulary.name(k): (f.annotation, f) for k, f in model.model_fields.items()}
    built = create_model(name, __config__=ConfigDict(**model.model_config), __doc__=doc, **fields)
    return built
