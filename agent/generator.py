"""The generator contract: token ids in, sampled token ids and their logprobs out.

Everything that produces actions for an episode (vLLM, transformers, a remote endpoint, a scripted
test double) implements `Generator`. Prompts are token ids, never text: the rollout layer owns the
chat template, so the ids the trainer sees are exactly the ids that were sampled.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample completions. Mirrors the common subset of vLLM's and transformers' options.

    Attributes:
        n: completions per prompt.
        temperature: softmax temperature; 0 means greedy decoding.
        top_p: nucleus sampling mass (1.0 disables it).
        max_tokens: maximum number of new tokens per completion.
        stop: strings that end a completion; the stop string stays in the output (its tokens were
            sampled, so they are part of the trajectory).
        stop_token_ids: extra token ids that end a completion, besides the model's end-of-sequence.
        seed: makes sampling reproducible: completion j of prompt i uses the seed
            `seed + i * n + j`, so results do not depend on how requests are batched.
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("n", "max_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise ValueError(f"seed must be an int >= 0 or None, got {self.seed!r}")
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.stop is None:
            object.__setattr__(self, "stop", ())
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if isinstance(self.stop, str):  # a bare string would be split into characters
            object.__setattr__(self, "stop", (self.stop,))
        object.__setattr__(self, "stop", tuple(self.stop))
        object.__setattr__(self, "stop_token_ids", tuple(self.stop_token_ids))


@dataclass
class Completion:
    """One sampled completion.

    Attributes:
        token_ids: the sampled ids, including the end-of-sequence or stop-string tokens that ended
            it (they were sampled and belong to the trajectory).
        logprobs: per-token log-probabilities under the sampling distribution (after temperature
            and top-p), aligned with `token_ids`.
        finish_reason: `"stop"` (end-of-sequence, stop token or stop string) or `"length"`
            (hit `max_tokens`).
        text: the decoded text of `token_ids` without special tokens, for display and actions. When a
            stop string ended the completion, the text ends right after it, even if the last
            sampled token carried further characters.
    """

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason
    text: str = field(default="")


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` right after the earliest occurrence of any stop string.

    Returns:
        The (possibly shortened) text and whether a stop string occurred.
    """
    ends = [text.index(s) + len(s) for s in stop if s in text]
    return (text[: min(ends)], True) if ends else (text, False)


@runtime_checkable
class Generator(Protocol):
    """Anything that samples completions for token-id prompts and can take new weights."""

    def generate(self, prompts: Sequence[Sequence[int]], sampling: SamplingParams) -> list[Completion]:
        """Sample `sampling.n` completions for each prompt.

        Returns:
            `len(prompts) * sampling.n` completions, prompt-major: completion `j` of prompt `i` is
            at index `i * sampling.n + j`.
        """
        ...

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace the policy weights (Hugging Face parameter names) used by later `generate` calls."""
        ...


@runtime_checkable
class ChatGenerator(Protocol):
    """A text-in, text-out chat model, such as an OpenAI-compatible endpoint.

    For evaluation only: it returns no token ids or logprobs, so its episodes cannot be trained on.
    """

    def chat(self, conversations: Sequence[Sequence[dict[str, str]]], sampling: SamplingParams) -> list[Completion]:
        """Reply to each conversation (a list of `{"role", "content"}` messages); one completion each."""
        ...


@runtime_checkable
class RequestStream(Protocol):
    """Requests that finish one by one: `submit` a prompt at any time, `step`, take what finished.

    The per-episode rollout (`collect_groups(schedule="per_episode")`) submits an episode's next
    turn as soon as its env has answered, while other requests are still being sampled.
    """

    @property
    def pending(self) -> int:
        """Requests submitted and not yet returned by `step`."""
        ...

    def submit(self, key: Hashable, prompt: Sequence[int], sampling: SamplingParams) -> None:
        """Queue one completion of `prompt` (`sampling.n` is ignored; `sampling.seed` is this request's own)."""
        ...

    def step(self) -> list[tuple[Hashable, Completion]]:
        """Advance sampling by one engine step; the requests that finished in it, with their keys."""
        ...

    def close(self) -> None:
        """Drop the requests still pending (the rollout stopped early)."""
        ...


class BatchStream:
    """A `RequestStream` over any `Generator`: each `step` samples every pending request at once.

    For generators without their own stream (transformers, test doubles): requests that share their
    sampling settings go in one `generate` call; seeded requests (each its own seed) go one by one.

    Args:
        generator: the token generator to sample with.
    """

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self._queue: list[tuple[Hashable, list[int], SamplingParams]] = []

    @property
    def pending(self) -> int:
        """Requests submitted and not yet returned by `step`."""
        return len(self._queue)

    def submit(self, key: Hashable, prompt: Sequence[int], sampling: SamplingParams) -> None:
        """Queue one completion of `prompt` for the next `step`."""
        self._queue.append((key, list(prompt), dataclasses.replace(sampling, n=1)))

    def close(self) -> None:
        """Drop the requests still queued."""
        self._queue.clear()

    def step(self) -> list[tuple[Hashable, Completion]]:
        """Sample every queued request; all of them finish in this step."""
        queue, self._queue = self._queue, []
        batches: dict[SamplingParams, list[tuple[Hashable, list[int]]]] = {}
        for key, prompt, sampling in queue:
            batches.setdefault(sampling, []).append((key, prompt))
        done = []
        for sampling, requests in batches.items():
            if sampling.seed is not None and len(requests) > 1:  # one seed per request: one call each
                done += [(k, self.generator.generate([p], sampling)[0]) for k, p in requests]
            else:
                completions = self.generator.generate([p for _, p in requests], sampling)
                done += [(k, c) for (k, _), c in zip(requests, completions, strict=True)]
        return done


def stream_of(generator: Generator) -> RequestStream:
    """The generator's own request stream (`VLLMGenerator.stream`), else a `BatchStream` over it."""
    own = getattr(generator, "stream", None)
    return own() if callable(own) else BatchStream(generator)
