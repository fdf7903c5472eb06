"""`reasoning_gym/<dataset>`: procedural reasoning-gym tasks, scored by reasoning-gym itself."""

from __future__ import annotations

from typing import Any

from typing_extensions import override

from turngym.envs.math_env import QuestionAnswerEnv

DATASET_SIZE = 100_000  # items are generated on demand from (seed, index); this bounds the index


_DATASETS: dict[tuple[str, int, str], Any] = {}


def create_dataset(name: str, size: int = DATASET_SIZE, **config: Any) -> Any:
    """Create a reasoning-gym dataset with a fixed seed; a clear error for unknown names.

    Datasets are cached by (name, size, config): items are generated on demand and scoring does
    not change a dataset, so the many envs of a rollout share one (some take 0.3 s to build).

    Raises:
        UnknownEnvError: no such dataset; the message lists close matches.
    """
    from turngym.envs.registration import REASONING_GYM_PREFIX, UnknownEnvError, close_names, did_you_mean

    try:
        import reasoning_gym
    except ImportError as err:
        raise ImportError(f"reasoning-gym is not installed ({err}); pip install reasoning-gym") from err
    names = sorted(reasoning_gym.factory.DATASETS)
    if name not in names:
        hint = did_you_mean([REASONING_GYM_PREFIX + c for c in close_names(name, names)])
        raise UnknownEnvError(
            f"unknown reasoning-gym dataset {name!r}.{hint} "
            f"`turngym envs list --reasoning-gym` lists all {len(names)} datasets."
        )
    key = (name, size, repr(sorted(config.items())))
    if key not in _DATASETS:
        _DATASETS[key] = reasoning_gym.create_dataset(name, seed=0, size=size, **config)
    return _DATASETS[key]


class ReasoningGymEnv(QuestionAnswerEnv):
    """One reasoning-gym task per episode; the id is `reasoning_gym/<dataset>`, e.g. `reasoning_gym/countdown`.

    The seed picks the item (reasoning-gym generates item i of a dataset from its seed and i).
    Answers are graded by the dataset's own `score_answer`, which may give partial credit.

    Args:
        dataset: a reasoning-gym dataset name.
        config: dataset options passed to reasoning-gym (e.g. difficulty ranges).
        **kwargs: `max_attempts`, `answer_format` (default `"boxed"`), `reward_weights`,
            `max_turns` (see `QuestionAnswerEnv`).

    Reward components: `correct` (reasoning-gym's score in [0, 1]), `format`.
    """

    def __init__(self, dataset: str, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataset_name = dataset
        self.dataset = create_dataset(dataset, **(config or {}))

    @override
    def next_problem(self) -> tuple[str, Any]:
        self.entry = self.dataset[int(self.np_random.integers(len(self.dataset)))]
        return self.entry["question"], self.entry["answer"]

    @override
    def grade(self, answer: str) -> tuple[float, str]:
        try:
            score = float(self.dataset.score_answer(answer, self.entry))
        except Exception:  # a third-party scorer failing on odd text: the answer scores nothing
            return 0.0, "unscorable"
        verdict = "correct" if score >= 1.0 else "partial" if score > 0 else "incorrect"
        return min(max(score, 0.0), 1.0), verdict
