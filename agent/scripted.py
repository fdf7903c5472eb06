"""`ScriptedGenerator`: a test double that answers with text chosen by a Python function.

It speaks the token-level `Generator` contract (ids in, ids out) through a real tokenizer, so
rollouts, chat deltas and records can be tested without a model. Logprobs are 0.0 (probability 1:
the script is deterministic).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from turngym.agent.generator import Completion, SamplingParams


class ScriptedGenerator:
    """Reply to each prompt with `policy(last_user_message_text)`, tokenized, plus end-of-turn.

    Args:
        tokenizer: the tokenizer whose ids the rollout uses.
        policy: maps the decoded prompt to the reply text.
        end_of_turn: append the tokenizer's EOS after the reply, as a sampler stopping on it would.
    """

    def __init__(self, tokenizer: Any, policy: Callable[[str], str], *, end_of_turn: bool = True) -> None:
        self.tokenizer, self.policy, self.end_of_turn = tokenizer, policy, end_of_turn
        self.calls: list[int] = []  # batch size of each generate call

    def generate(self, prompts: Sequence[Sequence[int]], sampling: SamplingParams) -> list[Completion]:
        """Reply to every prompt `sampling.n` times (see `Generator`)."""
        self.calls.append(len(prompts))
        completions = []
        for prompt in prompts:
            text = self.policy(self.tokenizer.decode(prompt))
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][: sampling.max_tokens]
            finish = "length" if len(ids) == sampling.max_tokens else "stop"
            if self.end_of_turn and finish == "stop":
                ids = [*ids, self.tokenizer.eos_token_id]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            completions += [Completion(list(ids), [0.0] * len(ids), finish, text) for _ in range(sampling.n)]
        return completions

    def load_weights(self, named_tensors: Iterable[Any]) -> None:
        """Nothing to load: the script is the policy."""
