"""The answer-quality judge: verdict parsing, agreement arithmetic, hand labels, and the composed config."""

import json

import pytest

from cvi_lab import config
from cvi_lab.lab import judge as J


def test_parse_takes_the_first_score_standing_alone():
    assert J.parse("4") == 4.0 and J.parse("Score: 5/5") == 5.0 and J.parse("I would say 2.") == 2.0
    assert J.parse("10") is None and J.parse("3.5") is None and J.parse("no idea") is None  # not a 1-5 score
    assert J.parse("7, no: 3") == 3.0


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


def test_prompt_asks_one_rubric_question_with_the_expected_answer():
    rubric = {"instructions": "Reply with one digit.", "relevance": "Relevant?", "correctness": "Right?", "speech": "Speakable?"}
    msgs = J.prompt(rubric, "correctness", "What is the capital of France?", "Paris.", "Paris")
    assert msgs[0].role == "system" and msgs[0].content == "Reply with one digit."
    assert "Expected answer: Paris" in msgs[1].content and msgs[1].content.endswith("Right? Score (1-5):")
    assert "Expected answer" not in J.prompt(rubric, "speech", "Hi", "Hello.", None)[1].content


def test_grade_skips_correctness_without_an_expected_answer_and_unscored_replies():
    import asyncio

    class Replies:  # an outside grader (e.g. a served model) answering in turn: only the protocol is used
        def __init__(self, texts):
            self.texts, self.asked = list(texts), []

        async def stream(self, messages, max_tokens=None, stats=None):
            self.asked.append(messages[1].content)
            yield self.texts.pop(0)

    rubric = config.compose(["experiment=scenarios"], config.LAB_ROOT).judge.rubric
    grader = Replies(["5", "well..."])
    assert asyncio.run(J.grade(grader, rubric, "Hi", "Hello!", None, 8)) == {"relevance": 5.0}
    assert len(grader.asked) == 2  # relevance and speech; no correctness question without an expected answer
    grader = Replies(["4", "1", "5"])
    assert asyncio.run(J.grade(grader, rubric, "Capital of France?", "Lyon.", "Paris", 8)) == \
        {"relevance": 4.0, "correctness": 1.0, "speech": 5.0}


def test_scenarios_experiment_composes_the_suite_with_the_judge():
    cfg = config.compose(["experiment=scenarios"], config.LAB_ROOT)
    assert cfg.dataset.path == "scenarios/scenarios.jsonl" and cfg.metrics.judge is True
    assert set(cfg.judge.rubric) == {"instructions", *J.DIMENSIONS} and cfg.judge.llm is None
    # the documented command (conf/judge/default.yaml, experiments/README.md) composes as written
    node = J.judge_llm_config(config.compose(["experiment=scenarios", "judge.llm=openai_compatible",
                                              "judge.llm_settings.base_url=http://127.0.0.1:11434/v1",
                                              "judge.llm_settings.model=qwen2.5:7b",
                                              "+judge.llm_settings.max_new_tokens=4"], config.LAB_ROOT))
    assert node._target_.endswith("OpenAICompatibleLLM") and node.model == "qwen2.5:7b"
    assert node.base_url == "http://127.0.0.1:11434/v1" and node.max_new_tokens == 4
    assert node.read_timeout_s == 30.0  # unset settings keep the llm config's own values
    own = J.judge_llm_config(config.compose(["experiment=scenarios", "judge.llm=ct2_causal"], config.LAB_ROOT))
    assert "base_url" not in own and own._target_.endswith("CT2CausalLLM")
