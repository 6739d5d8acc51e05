"""/v2/documents over HTTP: create from a local path or a URL (through the outbound policy), status while it
is processed, list by status and tags, get, patch, delete; the document fields of conversations and personas."""

from __future__ import annotations

import pytest
from aiohttp import web

from cvi_lab.domain.ids import DEFAULT_REPLICA_ID
from tests.helpers.pdf import text_pdf

CALL = {"test_mode": True, "replica_id": DEFAULT_REPLICA_ID}  # a conversation record without a call
MD = "# Lab guide\n\nThe guest **Wi-Fi** password is tangerine-42.\n\nLunch is at noon in the atrium.\n"


async def ready(api, document_id: str) -> dict:
    await api.app["documents"].drain(60)
    return await (await api.get(f"/v2/documents/{document_id}")).json()


async def create(api, **body) -> dict:
    resp = await api.post("/v2/documents", json=body)
    out = await resp.json()
    assert resp.status == 200, out
    return out


@pytest.fixture
async def origin():
    """A file server on loopback: /guide.html, /big (over the test's cap), /moved → /guide.html."""
    app = web.Application()
    app.router.add_get("/guide.html", lambda _: web.Response(
        text="<html><body><p>Visitors park in lot C.</p><script>x()</script></body></html>", content_type="text/html"))
    app.router.add_get("/big", lambda _: web.Response(body=b"word " * 5000, content_type="text/plain"))

    async def moved(_):
        raise web.HTTPFound("/guide.html")

    app.router.add_get("/moved", moved)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_a_local_markdown_file_becomes_ready_with_passages(api, tmp_path):
    path = tmp_path / "guide.md"
    path.write_text(MD)
    doc = await create(api, document_url=str(path), tags=["faq", "faq", "lab"], properties={"owner": "ops"})
    assert doc["status"] in ("started", "processing") and doc["document_id"].startswith("d")
    assert doc["document_name"] == "guide.md" and doc["tags"] == ["faq", "lab"]
    assert doc["properties"] == {"owner": "ops"}
    done = await ready(api, doc["document_id"])
    assert done["status"] == "ready" and done["progress"] == 100 and done["passage_count"] == 3
    stored = api.app["store"].passages([doc["document_id"]])
    assert [t for _, _, t in stored] == ["Lab guide", "The guest Wi-Fi password is tangerine-42.",
                                         "Lunch is at noon in the atrium."]


async def test_a_url_is_fetched_through_redirects_and_html_is_read(api, origin):
    doc = await create(api, document_url=f"{origin}/moved", document_name="Parking")
    done = await ready(api, doc["document_id"])
    assert done["status"] == "ready", done
    [(_, _, text)] = api.app["store"].passages([doc["document_id"]])
    assert text == "Visitors park in lot C."


async def test_an_oversize_download_ends_in_error(make_client, origin):
    api = await make_client(**{"documents.max_bytes": 1000})
    doc = await create(api, document_url=f"{origin}/big")
    done = await ready(api, doc["document_id"])
    assert done["status"] == "error" and "larger than the 1000 bytes accepted" in done["error_message"]


async def test_a_pdf_is_read_page_by_page_and_a_broken_one_ends_in_error(api, tmp_path):
    path = tmp_path / "manual.pdf"
    path.write_bytes(text_pdf(["The boiler room key hangs behind the blue door.", "Fire drills are on Mondays."]))
    done = await ready(api, (await create(api, document_url=f"file://{path}"))["document_id"])
    assert done["status"] == "ready" and done["passage_count"] == 2, done
    assert api.app["store"].passages([done["document_id"]])[0][2] == "The boiler room key hangs behind the blue door."
    path.write_bytes(b"%PDF-1.7\n...")
    done = await ready(api, (await create(api, document_url=str(path)))["document_id"])
    assert done["status"] == "error" and "the PDF could not be read" in done["error_message"], done


async def test_private_urls_are_refused_when_the_server_is_public_only(make_client, origin):
    api = await make_client(**{"outbound.allow_private_addresses": False})
    resp = await api.post("/v2/documents", json={"document_url": f"{origin}/guide.html"})
    err = await resp.json()
    assert resp.status == 400 and err["field"] == "document_url" and "loopback address" in err["error"]


async def test_local_paths_are_refused_when_the_conf_says_so(make_client, tmp_path):
    api = await make_client(**{"documents.allow_local_paths": False})
    (tmp_path / "a.txt").write_text("Alpha facts.")
    resp = await api.post("/v2/documents", json={"document_url": str(tmp_path / "a.txt")})
    err = await resp.json()
    assert resp.status == 400 and "reads no local paths" in err["error"] and err["field"] == "document_url"


@pytest.mark.parametrize("body,words", [
    ({}, "document_url"),
    ({"document_url": "  "}, "document_url: the source is empty"),
    ({"document_url": "gopher://x/y"}, "scheme 'gopher' is not accepted"),
    ({"document_url": "builtin:astronaut"}, "the scheme 'builtin' is not accepted"),
    ({"document_url": "/x", "tags": "faq"}, "tags"),
    ({"document_url": "/x", "shape": 1}, "unknown field 'shape'"),
])
async def test_bad_creates_are_a_400_naming_the_field(api, body, words):
    resp = await api.post("/v2/documents", json=body)
    err = await resp.json()
    assert resp.status == 400 and words in err["error"], err


async def test_list_filter_patch_and_delete(api, tmp_path):
    (tmp_path / "a.txt").write_text("Alpha facts.")
    (tmp_path / "b.txt").write_text("Beta facts.")
    a = await create(api, document_url=str(tmp_path / "a.txt"), tags=["alpha"])
    b = await create(api, document_url=str(tmp_path / "b.txt"), tags=["beta"])
    await api.app["documents"].drain(60)
    listed = await (await api.get("/v2/documents?status=ready")).json()
    assert listed["total_count"] == 2
    by_tag = await (await api.get("/v2/documents?tags=beta,gamma")).json()
    assert [d["document_id"] for d in by_tag["data"]] == [b["document_id"]]
    bad = await api.get("/v2/documents?status=done")
    assert bad.status == 400 and "accepted: started, processing, ready, error" in (await bad.json())["error"]
    patched = await (await api.patch(f"/v2/documents/{a['document_id']}", json={"tags": ["alpha", "beta"],
                                                                                 "document_name": "A"})).json()
    assert patched["tags"] == ["alpha", "beta"] and patched["document_name"] == "A"
    assert (await (await api.get("/v2/documents?tags=beta")).json())["total_count"] == 2
    assert (await api.delete(f"/v2/documents/{a['document_id']}")).status == 204
    assert (await api.get(f"/v2/documents/{a['document_id']}")).status == 404
    assert api.app["store"].passages([a["document_id"]]) == []
    assert (await api.delete(f"/v2/documents/{a['document_id']}")).status == 404


async def test_conversations_and_personas_store_their_document_fields(api, tmp_path):
    (tmp_path / "a.txt").write_text("Alpha facts.")
    doc = await create(api, document_url=str(tmp_path / "a.txt"))
    fields = {"document_ids": [doc["document_id"]], "document_tags": ["faq"], "document_retrieval_strategy": "speed"}
    persona = await (await api.post("/v2/personas", json={"system_prompt": "Be brief.", **fields})).json()
    assert {k: persona[k] for k in fields} == fields
    conv = await (await api.post("/v2/conversations", json={**CALL, **fields})).json()
    record = await (await api.get(f"/v2/conversations/{conv['conversation_id']}")).json()
    assert {k: record[k] for k in fields} == fields
    plain = await (await api.post("/v2/conversations", json=CALL)).json()
    record = await (await api.get(f"/v2/conversations/{plain['conversation_id']}")).json()
    assert record["document_ids"] is None and record["document_retrieval_strategy"] is None


@pytest.mark.parametrize("route,body", [
    ("/v2/conversations", {**CALL, "document_ids": ["d0000000000"]}),
    ("/v2/personas", {"system_prompt": "x", "document_ids": ["d0000000000"]}),
])
async def test_unknown_document_ids_are_a_404(api, route, body):
    missing = await api.post("/v2/documents", json={"document_url": "/nope/guide.md"})  # like a replica's video
    assert missing.status == 404 and "no file at" in (await missing.json())["error"]
    resp = await api.post(route, json=body)
    err = await resp.json()
    assert resp.status == 404 and "'d0000000000' not found" in err["error"] and err["field"] == "document_ids", err


@pytest.mark.parametrize("route,body,words", [
    ("/v2/conversations", {**CALL, "document_retrieval_strategy": "fast"},
     "'speed', 'balanced' or 'quality'"),
    ("/v2/conversations", {**CALL, "document_tags": "faq"}, "document_tags"),
])
async def test_bad_document_fields_are_a_400(api, route, body, words):
    resp = await api.post(route, json=body)
    err = await resp.json()
    assert resp.status == 400 and words in err["error"], err
