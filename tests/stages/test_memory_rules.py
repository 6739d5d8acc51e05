"""The rule-based memory extractor as shipped (cvi_lab/conf/memory/rules.yaml): it keeps the participant's own
statements about themselves and the decisions they state, as said; not the replica's words, questions, small talk."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

import cvi_lab
from cvi_lab.stages.memory import Remembered, Utterance

RULES = Path(cvi_lab.__file__).parent / "conf" / "memory" / "rules.yaml"


@pytest.fixture(scope="module")
def extractor():
    return instantiate(OmegaConf.load(RULES).extractor, _convert_="all")


def test_it_keeps_self_statements_and_decisions_as_said(extractor):
    said = [Utterance("user", "Hello! So, my daughter is called Mia. I work at the hospital on Rue Verte."),
            Utterance("replica", "My name is Anna and I love helping."),
            Utterance("user", "Okay let's book the table for Friday. I'll bring the contract."),
            Utterance("user", "i'm allergic to peanuts"),
            Utterance("user", "My daughter is called Mia.")]
    assert extractor.extract(said) == [
        Remembered("fact", "My daughter is called Mia."),
        Remembered("fact", "I work at the hospital on Rue Verte."),
        Remembered("decision", "Let's book the table for Friday."),
        Remembered("decision", "I'll bring the contract."),
        Remembered("fact", "I'm allergic to peanuts."),
    ]


@pytest.mark.parametrize("sentence", [
    "What is my name?", "I'm fine, thanks.", "Let's see.", "My god.", "I'll think about it.",
    "The weather is nice today.", "Tell me a joke.", "my " + "word " * 80,
])
def test_it_keeps_no_questions_small_talk_or_statements_about_other_things(extractor, sentence):
    assert extractor.extract([Utterance("user", sentence)]) == []
