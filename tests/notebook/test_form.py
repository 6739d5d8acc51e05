"""The panel's form rules: typed timeouts become seconds or a message naming the field and what is accepted."""

import pytest

from cvi_lab.notebook.form import CallForm, FormError, parse_seconds


@pytest.mark.parametrize("raw, minimum, expected", [("600", 1, 600), (" 30 ", 1, 30), ("45s", 1, 45), (0, 0, 0),
                                                     ("120.0", 1, 120), (15, 1, 15)])
def test_parse_seconds_accepts(raw, minimum, expected):
    assert parse_seconds("t", raw, minimum) == expected


@pytest.mark.parametrize("raw, minimum, words", [
    ("abc", 1, "'abc' is not a number"), ("", 1, "empty"), ("1.5", 1, "not a whole number"),
    ("0", 1, "0 s is not accepted"), ("-3", 0, "-3 s is not accepted"), (None, 1, "empty"),
])
def test_parse_seconds_refuses_with_a_message(raw, minimum, words):
    with pytest.raises(FormError) as info:
        parse_seconds("max call duration", raw, minimum)
    assert str(info.value).startswith("max call duration: ") and words in str(info.value)
    assert f"integer >= {minimum}" in str(info.value)


def test_request_body_from_the_form():
    body = CallForm(persona_id="p1", language=" English ", max_call_duration="90", participant_left_timeout="5",
                    participant_absent_timeout="60", apply_greenscreen=True, conversational_context="  ",
                    custom_greeting="Hi!").to_request()
    assert body == {"persona_id": "p1", "custom_greeting": "Hi!", "properties": {
        "max_call_duration": 90, "participant_left_timeout": 5, "participant_absent_timeout": 60,
        "language": "english", "apply_greenscreen": True, "enable_closed_captions": True}}
    assert CallForm(persona_id="p1", replica_id="r9").to_request()["replica_id"] == "r9"


def test_blank_greeting_falls_back_to_the_default_and_persona_is_required():
    from cvi_lab.domain.conversation import DEFAULT_GREETING

    assert CallForm(persona_id="p1", custom_greeting=" ").to_request()["custom_greeting"] == DEFAULT_GREETING
    with pytest.raises(FormError, match="persona: choose a persona"):
        CallForm(persona_id="").to_request()
    with pytest.raises(FormError, match="participant absent timeout"):
        CallForm(persona_id="p1", participant_absent_timeout="soon").to_request()
