"""Replica: the face (and voice) that is rendered, built offline from a video or image. SPEC §2."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from cvi_lab.domain.ids import DEFAULT_REPLICA_ID
from cvi_lab.domain.validation import HttpUrl, Name, RequestModel, source, source_schema
from cvi_lab.domain.vocabulary import FACES, REPLICA_NAMES, Aliased, renamed_model

ReplicaStatus = Literal["started", "completed", "error"]

BUILTIN_SOURCE = "builtin:astronaut"
# What `train_video_url` accepts (cvi_lab/calls/replicas.py): a local path, an http(s) URL with a host, a file: or
# builtin: URL.
Source = source(source_schema("[Ff][Ii][Ll][Ee]", "builtin"), "a local path, file://, http(s):// or builtin:")


class ReplicaCreate(Aliased, RequestModel):
    """POST /v2/replicas (and /v2/faces) body; either name of the name field is taken."""

    NAMES = REPLICA_NAMES

    replica_name: Name | None = Field(None, description="≡ face_name")
    # a local path, file:// URL or http(s) URL of a face video or image (a path that names no file: 404)
    train_video_url: Source
    callback_url: HttpUrl | None = None
    face_name: Name | None = Field(None, description="≡ replica_name (today's name)")


class Replica(BaseModel):
    replica_id: str
    replica_name: str | None = None
    status: ReplicaStatus
    training_progress: str = "0/100"
    error_message: str | None = None
    train_video_url: str | None = None
    callback_url: str | None = None
    created_at: str
    updated_at: str


Face = renamed_model(Replica, "Face", FACES, "A stored face (a replica under today's name) as /v2/faces returns it.")


def progress_text(percent: int) -> str:
    return f"{max(0, min(100, int(percent)))}/100"


DEFAULT_REPLICA = {
    "replica_id": DEFAULT_REPLICA_ID,
    "replica_name": "Astronaut (default)",
    "status": "completed",
    "training_progress": "100/100",
    "error_message": None,
    "train_video_url": BUILTIN_SOURCE,
    "callback_url": None,
}
