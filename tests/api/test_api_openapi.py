"""/openapi.json states what the server enforces (the fuzzing suite checks it at large; these are the places
the issue found wrong, checked in milliseconds), and a known path with a wrong method is a 405 with Allow."""

from __future__ import annotations

import pytest

from cvi_lab.domain.ids import DEFAULT_PERSONA_ID


@pytest.fixture
async def spec(make_client) -> dict:
    api = await make_client(**{"limits.max_page_size": 50, "limits.max_text_chars": 1234})
    return await (await api.get("/openapi.json")).json()


def param(spec: dict, path: str, method: str, name: str) -> dict:
    return next(p for p in spec["paths"][path][method]["parameters"] if p["name"] == name)


async def test_paging_bounds_are_the_configured_ones(spec):
    for path in ("/v2/conversations", "/v2/personas", "/v2/pals", "/v2/replicas", "/v2/faces"):
        limit = param(spec, path, "get", "limit")["schema"]
        assert (limit["type"], limit["minimum"], limit["maximum"], limit["default"]) == ("integer", 1, 50, 10)
        assert param(spec, path, "get", "page")["schema"]["minimum"] == 1


async def test_types_caps_enums_and_rules_are_in_the_schemas(spec):
    schemas = spec["components"]["schemas"]
    prompt = schemas["PersonaCreate"]["properties"]["system_prompt"]["anyOf"]
    assert {"type": "string", "maxLength": 1234} in prompt and {"type": "null"} in prompt
    rules = schemas["PersonaCreate"]["allOf"]
    assert any(r.get("then", {}).get("required") == ["system_prompt"] for r in rules)
    assert {"not": {"required": ["persona_name", "pal_name"], "properties": {
        "persona_name": {"not": {"type": "null"}}, "pal_name": {"not": {"type": "null"}}}}} in rules
    language = schemas["ConversationProperties"]["properties"]["language"]["anyOf"][0]
    assert "english" in language["enum"] and "spanish" in language["enum"]
    duration = schemas["ConversationProperties"]["properties"]["max_call_duration"]["anyOf"][0]
    assert duration["exclusiveMinimum"] == 0 and duration["maximum"] == 86400
    assert schemas["LLMLayer"]["properties"]["tools"]["items"]["properties"]["type"] == {"const": "function"}
    assert "$limits" not in str(spec) and "$languages" not in str(spec)


async def test_error_statuses_are_listed_where_the_server_answers_them(spec):
    paths = spec["paths"]
    assert {"400", "401", "404", "409"} <= set(paths["/v2/pals/{pal_id}"]["delete"]["responses"])
    assert param(spec, "/v2/personas/{persona_id}", "delete", "persona_id")["schema"]["not"] == {
        "const": DEFAULT_PERSONA_ID}
    assert {"409", "413"} <= set(paths["/v2/personas/{persona_id}"]["patch"]["responses"])
    assert {"409", "413", "429"} <= set(paths["/v2/conversations"]["post"]["responses"])
    patch = paths["/v2/pals/{pal_id}"]["patch"]["requestBody"]["content"]["application/json"]["schema"]
    assert patch["minItems"] == 1
    assert any(item["properties"]["path"] == {"const": "/pal_name"} for item in patch["items"]["oneOf"])


@pytest.mark.parametrize("method,path,allowed", [
    ("PUT", "/v2/pals", "GET, POST"),
    ("POST", "/v2/personas/p1234", "DELETE, GET, PATCH"),
    ("GET", "/v2/conversations/c1234/end", "POST"),
    ("PATCH", "/v2/faces/r1234", "DELETE, GET"),
])
async def test_a_wrong_method_on_a_known_path_is_405_with_allow(api, method, path, allowed):
    resp = await api.request(method, path)
    assert resp.status == 405 and resp.headers["Allow"] == allowed
    assert f"allowed: {allowed}" in (await resp.json())["error"]


@pytest.mark.parametrize("query,words", [
    ({"limit": ""}, "is not an integer"),
    ({"limit": "+5"}, "is not an integer"),
    ({"status": ""}, "accepted: active, ended"),
    ({"limit": ["5", "6"]}, "given 2 times"),
])
async def test_queries_are_parsed_as_documented(api, query, words):
    resp = await api.get("/v2/conversations", params=[(k, v) for k, vs in query.items()
                                                      for v in (vs if isinstance(vs, list) else [vs])])
    assert resp.status == 400 and words in (await resp.json())["error"]
