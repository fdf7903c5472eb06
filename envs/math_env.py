"""Question-answer environments: one problem per episode, answered in a set format.

`QuestionAnswerEnv` holds what such envs share (answer extraction, attempts, the `correct` and
`format` components); `MathVerify` draws math problems and checks answers with math-verify.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from typing_extensions import override

from turngym.envs.core import TextEnv, Turn, count_of, last_boxed, last_bracketed
from turngym.envs.problems import MAX_DIFFICULTY, Problem, arithmetic_problem, load_jsonl, word_problem

FORMAT_WEIGHT = 0.1  # reward for giving an answer in the required format, right or wrong
MAX_ANSWER_CHARS = 10_000
SOURCES = ("arithmetic", "word", "jsonl", "reasoning_gym")  # MathVerify's problem sources


def extract_answer(text: str, answer_format: str) -> str | None:
    r"""Extract the answer from model text.

    Args:
        text: the model's whole reply (reasoning around the answer is allowed).
        answer_format: `"boxed"` (last `\boxed{...}`), `"bracket"` (last `[...]`), or a tag name
            such as `"answer"` (last `<answer>...</answer>`).
    """
    if answer_format == "boxed":
        return last_boxed(text, max_chars=MAX_ANSWER_CHARS)
    if answer_format == "bracket":
        return last_bracketed(text)
    closing = text.rfind(f"</{answer_format}>")
    opening = text.rfind(f"<{answer_format}>", 0, max(closing, 0))
    if closing == -1 or opening == -1 or closing - opening > MAX_ANSWER_CHARS:
        return None
    return text[opening + len(answer_format) + 2 : closing].strip()


def format_instruction(answer_format: str) -> str:
    """The sentence that tells the model where its answer goes."""
    if answer_format == "boxed":
        return "Put your final answer in \\boxed{}, for example \\boxed{42}."
    if answer_format == "bracket":
        return "Put your final answer in square brackets, for example [42]."
    return f"Put your final answer between <{answer_format}> and </{answer_format}>."


class QuestionAnswerEnv(TextEnv):
    """Base for one-question episodes, optionally with several attempts.

    Subclasses implement `next_problem()` (question and reference for a new episode) and
    `grade(answer)` (a score in [0, 1] and a verdict). A wrong answer with attempts left gets
    "Incorrect, try again"; the episode terminates on a correct answer or the last attempt.

    Args:
        max_attempts: answers allowed per episode (1 = single-turn).
        answer_format: `"boxed"`, `"bracket"` or a tag name (see `extract_answer`).

    Reward components: `correct` (the grade of the answer), `format` (1 if an answer was found
    in the required format).
    """

    default_reward_weights = {"correct": 1.0, "format": FORMAT_WEIGHT}
    default_max_turns = 1

    def __init__(self, *, max_attempts: int = 1, answer_format: str = "boxed", **kwargs: Any) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if not re.fullmatch(r"boxed|bracket|[A-Za-z_][\w-]*", answer_format):
            raise ValueError(
                f"answer_format must be 'boxed', 'bracket' or a tag name like 'answer', got {answer_format!r}"
            )
        kwargs.setdefault("max_turns", max_attempts)
        super().__init__(**kwargs)
        self.max_attempts = max_attempts
        self.answer_format = answer_format

    def next_problem(self) -> tuple[str, Any]:
        """Draw the question and its reference for a new episode, using `self.np_random`."""
        raise NotImplementedError

    def grade(self, answer: str) -> tuple[float, str]:
        """Score an extracted answer in [0, 1]; return the score and a verdict word."""
        raise NotImplementedError

    @override
    def on_reset(self, options: dict[str, Any]) -> str:
        self.question, self.reference = self.next_problem()
        return f"{self.question}\n\n{format_instruction(self.answer_format)}"

    @override
    def valid_action(self) -> str | None:
        """The reference answer, in the required format."""
        reference = str(self.reference)
        if self.answer_format == "boxed":
            return f"\\boxed{{{reference}}}"
        if self.answer_format == "bracket":
            return f"[{reference}]"
        return f"<{self.answer_format}>{reference}</{self.answer_format}>"

    @override
    def on_step(self, action: str) -> Turn:
        attempts_left = self.max_attempts - self.turn
        answer = extract_answer(action, self.answer_format)
        if answer is None:
            score, verdict, rewards = 0.0, "no answer", {}
            feedback = f"No answer found. {format_instruction(self.answer_format)}"
        else:
            score, verdict = self.grade(answer)
            rewards = {"correct": score, "format": 1.0}
            feedback = {
                "correct": "Correct!",
                "partial": f"Partly correct (score {score:.2f}).",
                "unverifiable": "Could not verify your answer (too long or too complex).",
            }.get(verdict, "Incorrect.")
        solved = score >= 1.0
        metrics = {"won": solved, "correct": solved, "verdict": verdict, "invalid_action": answer is None}
        if not solved:
            feedback += f" Try again ({count_of(attempts_left, 'attempt')} left)." if attempts_left > 0 else ""
        return Turn(feedback, rewards, terminated=solved or attempts_left <= 0, metrics=metrics)


class MathVerify(QuestionAnswerEnv):
    r"""Math problems with answers checked by math-verify, bounded in time.

    Args:
        source: `"arithmetic"` or `"word"` (built-in procedural generators, see
            `turngym.envs.problems`), `"jsonl"` (a file of `{"question", "answer"}` lines, given
            by `path`), or `"reasoning_gym"` (the reasoning-gym task named by `task`).
        difficulty: 1 to 5 for the procedural sources.
        path: the JSONL file for `source="jsonl"` (an error with any other source).
        task: the reasoning-gym dataset name for `source="reasoning_gym"` (e.g. `"gsm_symbolic"`;
            an error with any other source).
        **kwargs: `max_attempts`, `answer_format` (see `QuestionAnswerEnv`), `reward_weights`.

    Equivalent forms count: `1/2`, `0.5` and `\frac12` are the same answer; so are intervals and
    sets written differently. Answers that take math-verify over 1 s are "unverifiable" and score 0.
    """

    def __init__(
        self,
        source: str = "arithmetic",
        difficulty: int = 1,
        path: str | Path | None = None,
        task: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; use 'arithmetic', 'word', 'jsonl' or 'reasoning_gym'")
        for name, value, needs in (("path", path, "jsonl"), ("task", task, "reasoning_gym")):
            if value is not None and source != needs:  # it would be ignored: problems from `source` instead
                raise ValueError(
                    f"MathVerify: {name}={str(value)!r} is read only with source={needs!r} (source is {source!r}); "
                    f"set source={needs!r} or drop {name}"
                )
        self.source, self.difficulty = source, difficulty
        self._problems: tuple[Problem, ...] | None = None
        self._dataset = None
        if source == "jsonl":
            if path is None:
                raise ValueError("MathVerify(source='jsonl') needs path= to a JSONL file of {question, answer} lines")
            self._problems = load_jsonl(path)
        elif source == "reasoning_gym":
            if task is None:
                raise ValueError("MathVerify(source='reasoning_gym') needs task=, e.g. task='gsm_symbolic'")
            from turngym.envs.reasoning_gym_env import create_dataset

            self._dataset = create_dataset(task)
        elif not 1 <= difficulty <= MAX_DIFFICULTY:  # the procedural sources, arithmetic and word
            raise ValueError(f"difficulty must be in 1..{MAX_DIFFICULTY}, got {difficulty}")

    @override
    def next_problem(self) -> tuple[str, str]:
        if self._problems is not None:
            problem = self._problems[int(self.np_random.integers(len(self._problems)))]
        elif self._dataset is not None:
            entry = self._dataset[int(self.np_random.integers(len(self._dataset)))]
            problem = Problem(entry["question"], str(entry["answer"]))
        elif self.source == "word":
            problem = word_problem(self.np_random, self.difficulty)
        else:
            problem = arithmetic_problem(self.np_random, self.difficulty)
        return problem.question, problem.answer

    @override
    def grade(self, answer: str) -> tuple[float, str]:
        from turngym.envs.verify import verify_answer

        verdict = verify_answer(self.reference, answer)
        return (1.0 if verdict == "correct" else 0.0), verdict
