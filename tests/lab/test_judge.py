"""The answer-quality judge: verdict parsing, agreement arithmetic, hand labels, and the composed config."""

import json

import pytest

from cvi_lab import config
from cvi_lab.lab import judge as J


def test_parse_takes_the_first_score_of_each_dimension_and_skips_na():
    assert J.parse("relevance=4 correctness=NA speech=5") == {"relevance": 4.0, "speech": 5.0}
    assert J.parse("Relevance: 2, correctness: 1; speech = 3. relevance=5") == {"relevance": 2, "correctness": 1, "speech": 3}
    assert J.parse("I think it is a good answer.") == {}
    assert J.parse("relevance=7") == {}  # out of the 1-5 scale: not a score


def test_agreement_within_one_and_exact():
    pairs = [({"relevance": 5, "speech": 3}, {"relevance": 5, "speech": 5}),  # 0, 2
             ({"relevance": 2}, {"relevance": 3, "correctness": 1}),  # 1 (correctness not given by the judge)
             ({}, {"relevance": 4})]  # unscored
    m = J.agreement(pairs)
    assert m["judge_labels"] == 3 and m["judge_labels_scored_rate"] == pytest.approx(2 / 3)
    assert m["judge_agreement_within1"] == pytest.approx(2 / 3)
    assert m["judge_agreement_exact"] == pytest.approx(1 / 3)
    assert m["judge_mean_abs_error"] == pytest.approx(1.0)
    assert J.agreement([]) == {"judge_labels": 0.0}


def test_shipped_hand_labels_cover_good_and_bad_answers():
    labels = J.read_labels("scenarios/judge_labels.jsonl")
    assert len(labels) >= 12
    for dim in J.DIMENSIONS:
        vals = [lab.scores[dim] for lab in labels if dim in lab.scores]
        assert min(vals) <= 2 and max(vals) == 5, dim
    assert all(("correctness" in lab.scores) == bool(lab.expected) for lab in labels)


def test_bad_labels_are_named(tmp_path):
    (tmp_path / "l.jsonl").write_text(json.dumps({"user": "hi", "answer": "hello", "relevance": 9}) + "\n")
    with pytest.raises(J.JudgeError, match="1-5"):
        J.read_labels(tmp_path / "l.jsonl")
    with pytest.raises(J.JudgeError, match="do not exist"):
        J.read_labels(tmp_path / "none.jsonl")


def test_prompt_carries_rubric_and_expected_answer():
    msgs = J.prompt("Grade it.", "What is the capital of France?", "Paris.", "Paris")
    assert msgs[0].role == "system" and msgs[0].content == "Grade it."
    assert "Expected answer: Paris" in msgs[1].content and "Assistant answered: Paris." in msgs[1].content


def test_scenarios_experiment_composes_the_suite_with_the_judge():
    cfg = config.compose(["experiment=scenarios"], config.LAB_ROOT)
    assert cfg.dataset.path == "scenarios/scenarios.jsonl" and cfg.metrics.judge is True
    assert "relevance=" in cfg.judge.rubric and cfg.judge.llm is None
    node = J.judge_llm_config(config.compose(["experiment=scenarios", "judge.llm=openai_compatible",
                                              "+judge.llm_settings.model=qwen2.5:7b"], config.LAB_ROOT))
    assert node._target_.endswith("OpenAICompatibleLLM") and node.model == "qwen2.5:7b"
