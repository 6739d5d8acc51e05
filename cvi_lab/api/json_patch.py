"""JSON Patch (RFC 6902) over a persona's editable fields: what an operation may say, as a schema and as a check.

Why its own module: the document must say exactly what PATCH enforces. What one operation can get wrong on its
own (its keys, its op, a path that is not editable, a value of the wrong type for a top-level field) is in the
schema and answered 400. What depends on the stored record (a `test` that fails, a member that is not there, a
result that breaks a cross-field rule or a nested layer setting) cannot be in a schema: RFC 5789 calls that a
conflicting state, answered 409.
"""

from __future__ import annotations

import json
from typing import Any

import jsonpatch
import jsonpointer
from pydantic import BaseModel, TypeAdapter, ValidationError

from cvi_lab.api.errors import ApiError
from cvi_lab.domain.errors import Conflict, DomainError

VALUE_OPS = ("add", "replace", "test")
FROM_OPS = ("move", "copy")
# below /layers/ every stage setting may be patched (the layers' own sections take free keys)
NESTED = "^/layers/.+"


def _paths(fields: list[str]) -> str:
    return "^/(" + "|".join(fields) + ")$|" + NESTED


def patch_schema(model: type[BaseModel], fields: dict[str, str], noun: str) -> dict[str, Any]:
    """`fields`: stored name -> the name this vocabulary patches. The schema of one list of operations."""
    props = model.model_json_schema(ref_template="#/components/schemas/{model}")["properties"]
    paths = _paths(list(fields.values()))
    one_value = [{"type": "object", "required": ["op", "path", "value"], "additionalProperties": False,
                  "properties": {"op": {"enum": list(VALUE_OPS)}, "path": {"const": f"/{name}"},
                                 "value": props[stored]}}
                 for stored, name in fields.items()]
    nested = {"type": "object", "required": ["op", "path", "value"], "additionalProperties": False,
              "properties": {"op": {"enum": list(VALUE_OPS)}, "path": {"type": "string", "pattern": NESTED},
                             "value": {}}}
    remove = {"type": "object", "required": ["op", "path"], "additionalProperties": False,
              "properties": {"op": {"const": "remove"}, "path": {"type": "string", "pattern": paths}}}
    moving = {"type": "object", "required": ["op", "from", "path"], "additionalProperties": False,
              "properties": {"op": {"enum": list(FROM_OPS)}, "from": {"type": "string", "pattern": paths},
                             "path": {"type": "string", "pattern": paths}}}
    return {
        "type": "array", "minItems": 1, "items": {"oneOf": [*one_value, nested, remove, moving]},
        "description": f"RFC 6902 JSON Patch over the {noun}'s editable fields ("
                       + ", ".join(f"/{n}" for n in fields.values()) + ", and settings below /layers/). 409 when "
                       "it conflicts with the stored record: a failed test, a missing member, or a result that is "
                       "not a valid create body (e.g. removing system_prompt in full mode).",
    }


def check_operations(ops: Any, model: type[BaseModel], fields: dict[str, str], context: dict[str, Any]) -> list[dict]:
    """400 for what the schema says an operation cannot be (the same rules, in the same order of concern)."""
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise ApiError(400, "the body must be a JSON Patch (RFC 6902): a list of {op, path, value} objects")
    if not ops:
        raise ApiError(400, "the JSON Patch is empty; give at least one operation")
    editable = ", ".join(f"/{n}" for n in fields.values()) + ", /layers/..."
    by_name = {name: stored for stored, name in fields.items()}

    def target(i: int, key: str, pointer: Any) -> str | None:
        if not isinstance(pointer, str):
            raise ApiError(400, f"the JSON Patch cannot be applied: operation {i}: {key} must be a string")
        if pointer.startswith("/layers/") and len(pointer) > len("/layers/"):
            return None
        name = pointer[1:] if pointer.startswith("/") else pointer
        if not pointer.startswith("/") or name not in by_name:
            raise ApiError(400, f"the JSON Patch cannot be applied: operation {i}: {key} {pointer[:80]!r}: unknown "
                                f"field {name[:60]!r}; editable paths: {editable}", key)
        return by_name[name]

    for i, op in enumerate(ops):
        kind = op.get("op")
        if kind not in (*VALUE_OPS, "remove", *FROM_OPS):
            raise ApiError(400, f"the JSON Patch cannot be applied: operation {i}: op {str(kind)[:40]!r} is not "
                                "accepted; accepted: add, remove, replace, move, copy, test")
        allowed = {"op", "path", *(("value",) if kind in VALUE_OPS else ()), *(("from",) if kind in FROM_OPS else ())}
        missing, extra = allowed - set(op), set(op) - allowed
        if missing or extra:
            problem = f"needs {', '.join(sorted(missing))}" if missing else f"does not take {', '.join(sorted(extra))}"
            raise ApiError(400, f"the JSON Patch cannot be applied: operation {i} ({kind}) {problem}; it takes "
                                f"{', '.join(sorted(allowed))}")
        stored = target(i, "path", op["path"])
        if kind in FROM_OPS:
            target(i, "from", op["from"])
        if kind in VALUE_OPS and stored is not None and not (
                op["value"] is None and not model.model_fields[stored].is_required()):  # null = the default
            annotation = model.model_fields[stored].annotation
            try:
                TypeAdapter(annotation).validate_python(op["value"], strict=True, context=context)
            except ValidationError as exc:
                err = exc.errors(include_url=False)[0]
                shown = json.dumps(op["value"])[:60] if isinstance(op["value"], (str, int, float, bool, type(None))) \
                    else type(op["value"]).__name__
                name = fields[stored]
                raise ApiError(400, f"{name}: {err['msg']} (got {shown})", name) from None
    return ops


def apply(ops: list[dict], document: dict[str, Any]) -> dict[str, Any]:
    """The patched document; an operation the stored record does not allow is a 409."""
    try:
        return jsonpatch.JsonPatch(ops).apply(document)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError, ValueError) as exc:
        raise Conflict(f"the JSON Patch cannot be applied to this record: {exc}") from None


def as_conflict(exc: DomainError) -> DomainError:
    """A patched document that is not a valid body: the patch was well formed, the record's state decided."""
    return Conflict(f"the patched record is not valid: {exc.message}", exc.field) if exc.status == 400 else exc
