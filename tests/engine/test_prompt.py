"""The one system message (pure), the history window, and the tool-call convention's two halves."""

from __future__ import annotations

import json

import pytest

from cvi_lab.engine.prompt import Dialogue, system_message
from cvi_lab.engine.tools import opens_tool_call, parse_tool_call, tool_instructions

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def test_system_message_is_prompt_then_persona_context_then_conversational_context_then_tools():
    assert system_message("You are Ada.", "Ada sells rocks.", "Talking to Michael.", []) == (
        "You are Ada.\n\nAda sells rocks.\n\nTalking to Michael.")
    assert system_message(" P ", "", "  ", []) == "P"
    with_tools = system_message("P", "C", "", TOOLS)
    head, block = with_tools.split("\n\n", 2)[:2], with_tools.split("\n\n", 2)[2]
    assert head == ["P", "C"] and block == tool_instructions(TOOLS)
    assert json.loads(block.split("\n", 1)[1]) == [TOOLS[0]["function"]]
    assert tool_instructions([]) == ""


def test_dialogue_merges_roles_and_tracks_the_sent_system_message():
    d = Dialogue("P", "", "ctx", [], max_messages=40, trim_block=8)
    d.add("assistant", "Hi.")
    d.add("assistant", "Still me.")
    d.add("user", "Hello")
    assert [(m.role, m.content) for m in d.messages()] == [
        ("system", "P\n\nctx"), ("assistant", "Hi. Still me."), ("user", "Hello")]
    assert d.sent_system_message() == "P\n\nctx"  # nothing sent yet: what would be sent now
    d.sent(d.messages())
    d.append_context("more")
    assert d.system_message() == "P\n\nctx more" and d.sent_system_message() == "P\n\nctx"
    d.overwrite_context("")
    assert d.system_message() == "P"


def test_history_window_moves_in_blocks_and_opens_with_a_user_message():
    d = Dialogue("P", "", "", [], max_messages=6, trim_block=3)
    windows = []
    for i in range(10):
        d.add("user" if i % 2 == 0 else "assistant", f"m{i}")
        d.trim()
        windows.append([m.content for m in d.messages()[1:]])
    # the window grows at its end only (the LLM's prompt cache keeps its prefix), then jumps a block forward
    # to the next user message once the next prompt would exceed 6 messages
    assert windows[4] == ["m0", "m1", "m2", "m3", "m4"]
    assert windows[5] == ["m4", "m5"] and windows[8] == ["m4", "m5", "m6", "m7", "m8"]
    assert windows[9] == ["m8", "m9"]


@pytest.mark.parametrize("reply", ['{"name": "get_weather", "arguments": {"city": "Paris"}}',
                                   '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
                                   '{"tool": "get_weather", "parameters": {"city": "Paris"}}'])
def test_tool_call_replies_are_read_back(reply):
    assert opens_tool_call("  " + reply)
    call = parse_tool_call(reply)
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}


@pytest.mark.parametrize("reply", ["{not json", "[1, 2]", '{"arguments": {}}'])
def test_unreadable_tool_calls_say_so(reply):
    with pytest.raises(ValueError, match="unreadable tool call"):
        parse_tool_call(reply)
    assert not opens_tool_call("Sure, I can help.")
