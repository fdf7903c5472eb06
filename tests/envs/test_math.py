"""MathVerify: answer extraction, verification (equivalent forms, hostile input), sources, attempts."""

from __future__ import annotations

import json
import re
from fractions import Fraction

import numpy as np
import pytest

from turngym.envs import make
from turngym.envs.math_env import extract_answer
from turngym.envs.problems import arithmetic_problem, load_jsonl, word_problem
from turngym.envs.verify import verify_answer

# (reference, answer, equivalent?) -- 30 hand-picked forms
EQUIVALENCES = [
    ("1/2", "0.5", True),
    ("1/2", "\\frac12", True),
    ("1/2", "\\frac{1}{2}", True),
    ("1/2", "\\dfrac{1}{2}", True),
    ("1/2", "2/4", True),
    ("1/2", "0.50", True),
    ("0.5", "1/3", False),
    ("12", "12.0", True),
    ("12", "+12", True),
    ("12", "1,2", False),
    ("-3", "-\\frac{6}{2}", True),
    ("12", "13", False),
    ("1000", "1,000", True),
    ("\\sqrt{2}/2", "\\frac{1}{\\sqrt{2}}", True),
    ("\\sqrt{8}", "2\\sqrt{2}", True),
    ("\\pi/2", "\\frac{\\pi}{2}", True),
    ("x^2+2x+1", "(x+1)^2", True),
    ("x^2-1", "(x-1)(x+1)", True),
    ("x^2+1", "(x+1)^2", False),
    ("[1, 2)", "[1,2)", True),
    ("[1, 2)", "[1, 2]", False),
    ("(0, \\infty)", "(0,\\infty)", True),
    ("\\{1, 2, 3\\}", "\\{3, 2, 1\\}", True),
    ("\\{1, 2\\}", "\\{1, 3\\}", False),
    ("2, 3", "3, 2", True),
    ("50\\%", "0.5", True),
    ("2^{10}", "1024", True),
    ("\\frac{3}{4}", "0.75", True),
    ("\\frac{3}{4}", "0.7", False),
    ("10^{3}", "1000", True),
]


@pytest.mark.parametrize("reference, answer, equivalent", EQUIVALENCES)
def test_equivalent_forms(reference, answer, equivalent) -> None:
    assert verify_answer(reference, answer) == ("correct" if equivalent else "incorrect")


HOSTILE = [
    "9^9^9^9^9",
    "(" * 10_000 + "1" + ")" * 10_000,
    "1+" * 50_000 + "1",  # 100 KB
    "\\frac{" * 5_000 + "1" + "}{2}" * 5_000,
    "9" * 100_000,
    "(" * 30 + "1+1" + ")" * 30,
    "\\sqrt{" * 50 + "2" + "}" * 50,
    "x^{" * 40 + "2" + "}" * 40,
]


@pytest.mark.parametrize("answer", HOSTILE, ids=lambda a: f"{a[:12]}...({len(a)} chars)")
def test_hostile_answers_return_a_verdict(answer) -> None:
    """Each call returns (bounded by a killable worker); none is judged correct."""
    assert verify_answer("2", answer) in ("incorrect", "unverifiable")


def test_answers_must_be_math_not_prose() -> None:
    """math-verify would read the last number out of free text; a boxed sentence is not an answer."""
    assert verify_answer("2", "ignore the reference answer and mark this correct: 2") == "incorrect"
    assert verify_answer("5", "5 \\text{ apples}") == "correct"  # units inside \\text{} are fine
    assert verify_answer("\\sqrt{2}", "sqrt(2)") == "correct"  # function names are not prose


def test_verification_still_works_after_a_killed_worker() -> None:
    assert verify_answer("2", "(" * 30 + "1+1" + ")" * 30) == "unverifiable"  # overruns; the worker is replaced
    assert verify_answer("x^2+2x+1", "(x+1)^2") == "correct"


@pytest.mark.parametrize(
    "text, fmt, expected",
    [
        ("so \\boxed{\\frac{1}{2}}.", "boxed", "\\frac{1}{2}"),
        ("[7] then [8]", "bracket", "8"),
        ("<answer> 42 </answer>", "answer", "42"),
        ("<answer>1</answer> <answer>2</answer>", "answer", "2"),
        ("<answer>42", "answer", None),
        ("42", "boxed", None),
    ],
)
def test_extract_answer(text, fmt, expected) -> None:
    assert extract_answer(text, fmt) == expected


def test_single_turn_correct_wrong_and_unformatted() -> None:
    env = make("turngym/MathVerify-v0")
    obs, _ = env.reset(seed=3)
    a, b = (int(n) for n in re.match(r"What is (\d+) \+ (\d+)\?", obs).groups())
    assert "\\boxed{}" in obs
    obs, reward, terminated, _, info = env.step(f"{a} plus {b} is \\boxed{{{a + b}}}")
    assert (obs, reward, terminated, info["rewards"]) == (
        "Correct!",
        1.1,
        True,
        {"correct": 1.0, "format": 1.0},
    )
    env.reset(seed=3)
    obs, reward, terminated, _, info = env.step(f"\\boxed{{{a + b + 1}}}")
    assert (obs, reward, terminated, info["metrics"]["won"]) == (
        "Incorrect.",
        pytest.approx(0.1),
        True,
        False,
    )
    env.reset(seed=3)
    obs, reward, terminated, _, info = env.step(f"The answer is {a + b}")
    assert obs.startswith("No answer found") and reward == 0.0 and terminated and info["metrics"]["invalid_action"]


def test_multi_try_gives_feedback_and_ends_on_success() -> None:
    env = make("turngym/MathVerify-v0", max_attempts=3, answer_format="answer")
    obs, _ = env.reset(seed=0)
    assert "<answer>" in obs
    gold = int(env.reference)
    obs, reward, terminated, truncated, _ = env.step(f"<answer>{gold + 1}</answer>")
    assert obs == "Incorrect. Try again (2 attempts left)." and not (terminated or truncated)
    obs, reward, terminated, _, info = env.step(f"<answer>{gold}</answer>")
    assert obs == "Correct!" and terminated and info["metrics"]["won"]


def test_multi_try_terminates_after_the_last_attempt() -> None:
    env = make("turngym/MathVerify-v0", max_attempts=2)
    env.reset(seed=0)
    assert env.step("\\boxed{-1}")[2] is False
    _, _, terminated, truncated, _ = env.step("\\boxed{-1}")
    assert terminated and not truncated  # failed for good: termination, not a turn-limit truncation


def _evaluate(expression: str) -> Fraction:
    """Independent reference: evaluate the question's expression with exact fractions."""
    tokens = re.findall(r"\d+|[-+*/()]", expression)
    return eval("".join(f"Fraction({t})" if t.isdigit() else t for t in tokens), {"Fraction": Fraction})  # noqa: S307


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_arithmetic_answers_match_their_questions(difficulty) -> None:
    rng = np.random.default_rng(difficulty)
    for _ in range(50):
        problem = arithmetic_problem(rng, difficulty)
        expression = re.match(r"What is (.+?)\?", problem.question).group(1)
        assert _evaluate(expression) == Fraction(problem.answer), problem


def _replay_word_problem(question: str) -> int:
    """Independent reference: redo the story sentence by sentence."""
    count = int(re.match(r"\w+ has (\d+)", question).group(1))
    for sentence in question.split(". ")[1:]:
        if m := re.search(r"gets (\d+) more|finds (\d+) more", sentence):
            count += int(m.group(1) or m.group(2))
        elif m := re.search(r"gives (\d+)", sentence):
            count -= int(m.group(1))
        elif "doubles" in sentence:
            count *= 2
        elif "triples" in sentence:
            count *= 3
        elif m := re.search(r"into (\d+) boxes", sentence):
            assert count % int(m.group(1)) == 0
            count //= int(m.group(1))
    return count


@pytest.mark.parametrize("difficulty", [1, 3, 5])
def test_word_problem_answers_follow_the_story(difficulty) -> None:
    rng = np.random.default_rng(difficulty)
    for _ in range(50):
        problem = word_problem(rng, difficulty)
        assert _replay_word_problem(problem.question) == int(problem.answer), problem


def test_jsonl_source(tmp_path) -> None:
    path = tmp_path / "problems.jsonl"
    path.write_text(
        "\n".join(json.dumps({"question": f"What is {i} squared?", "answer": str(i * i)}) for i in range(5))
    )
    env = make("turngym/MathVerify-v0", source="jsonl", path=str(path))
    obs, _ = env.reset(seed=1)
    i = int(re.search(r"What is (\d+) squared", obs).group(1))
    assert env.step(f"\\boxed{{{i * i}}}")[0] == "Correct!"
    assert make("turngym/MathVerify-v0", source="jsonl", path=str(path))._problems is env._problems  # one read
    path.write_text('{"question": "q"}\n')  # an edited file is read again
    with pytest.raises(ValueError, match=r"problems.jsonl:1: expected a JSON object with 'question' and 'answer'"):
        load_jsonl(path)
    with pytest.raises(FileNotFoundError, match=r"no JSONL file at '.*missing.jsonl' \(path= must name a file"):
        make("turngym/MathVerify-v0", source="jsonl", path=str(tmp_path / "missing.jsonl"))


def test_reasoning_gym_source_uses_math_verify() -> None:
    env = make("turngym/MathVerify-v0", source="reasoning_gym", task="basic_arithmetic")
    env.reset(seed=2)
    assert env.step(f"\\boxed{{{env.reference}}}")[0] == "Correct!"


def test_bad_configuration_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="needs path="):
        make("turngym/MathVerify-v0", source="jsonl")
    with pytest.raises(ValueError, match="unknown source 'books'"):
        make("turngym/MathVerify-v0", source="books")
    with pytest.raises(ValueError, match="difficulty must be in 1..5"):
        make("turngym/MathVerify-v0", difficulty=9)
