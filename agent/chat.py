r"""Token-level chat turns: build a multi-turn conversation incrementally, never re-tokenizing it.

The first prompt is the chat template rendered over the system prompt and the first observation.
After that, the conversation only grows: each assistant turn appends exactly the sampled ids, and
each env feedback appends the template's "delta" for a new user message plus the generation prompt.
The ids the trainer sees are therefore the ids that were sampled.

The delta comes from rendering one canonical two-turn conversation with placeholder contents:

    render([user U, assistant A, user F], add_generation_prompt=True)
    = ... U ... A <between> F <after>

`<between>` closes the assistant turn and opens the user turn (ChatML: `<|im_end|>\n<|im_start|>user\n`),
`<after>` closes the user turn and opens the next assistant turn. After sampled ids, we append
`<between>` (minus its leading end-of-turn token when the sampler already produced it), the feedback,
and `<after>`.

Prefix stability: for templates where rendering a longer conversation does not change the text of
earlier turns (ChatML, Llama-3 style), the incremental ids equal a full render of the conversation
(tested). Templates that rewrite earlier turns (e.g. ones that drop reasoning blocks from past
assistant messages) are not prefix-stable; `prefix_stable` reports it, and turngym still uses the
incremental form: the model is trained on exactly the ids it was shown and produced, which is what
matters for correct importance ratios; a fresh full render would differ in earlier turns.
"""

from __future__ import annotations

import threading
from typing import Any

_U, _A, _F = "Xq7UserContentZ", "Xq7AssistantContentZ", "Xq7FeedbackContentZ"


class ChatFormat:
    """The token pieces of a tokenizer's chat template for incremental multi-turn conversations.

    Args:
        tokenizer: a Hugging Face tokenizer with a chat template.
        end_of_turn_ids: ids that end an assistant turn when sampled (default: the tokenizer's EOS).

    Attributes:
        prefix_stable: whether the one-turn prompt is a prefix of the two-turn render.
        trims: whether the template strips whitespace around message contents.
    """

    def __init__(self, tokenizer: Any, end_of_turn_ids: list[int] | None = None) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template; turngym needs one to build conversations")
        self.tokenizer = tokenizer
        self.end_of_turn_ids = set(end_of_turn_ids or [tokenizer.eos_token_id])
        self._special_texts = [t.content for t in tokenizer.added_tokens_decoder.values()]
        two_turns = self._render([_U, _A, _F], add_generation_prompt=True)
        between = two_turns[two_turns.index(_A) + len(_A) : two_turns.index(_F)]
        self.after = two_turns[two_turns.index(_F) + len(_F) :]
        # Split `between` after its last special token: what follows it (ChatML: "user\n") is plain
        # text that a full render tokenizes together with the feedback, so we do the same.
        cut = max((between.rfind(s) + len(s) for s in self._special_texts if s in between), default=0)
        self.between_head, self.between_tail = between[:cut], between[cut:]
        self._head_ids = self._encode(self.between_head)
        self.prefix_stable = two_turns.startswith(self._render([_U], add_generation_prompt=True))
        self.trims = f" {_F} " not in self._render([_U, _A, f" {_F} "], add_generation_prompt=True)
        # Per-episode rollouts build deltas on env threads; a fast tokenizer's special-token
        # setting is shared state that one encode flips and another reads, so one at a time.
        self._lock = threading.Lock()

    def initial_prompt(self, observation: str, system_prompt: str | None = None) -> list[int]:
        """Ids of the first prompt: optional system message, the first observation, generation prompt."""
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        messages.append({"role": "user", "content": observation})
        return list(
            self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        )

    def feedback_ids(self, sampled_ids: list[int], feedback: str) -> list[int]:
        """Ids to append after an assistant turn's sampled ids: close it, add the user feedback, reopen.

        If the sampler stopped on the end-of-turn token, that token is already in `sampled_ids` and
        is not repeated; otherwise (length limit, stop string) the template's closing is added whole.
        """
        with self._lock:
            return self._feedback_ids(sampled_ids, feedback)

    def _feedback_ids(self, sampled_ids: list[int], feedback: str) -> list[int]:
        head = self._head_ids
        if head and sampled_ids and sampled_ids[-1] in self.end_of_turn_ids and head[0] == sampled_ids[-1]:
            head = head[1:]
        text = feedback.strip() if self.trims else feedback
        if any(special in text for special in self._special_texts):
            # env text holding special-token strings is split, so feedback cannot open or close turns
            content = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
            return head + self._encode(self.between_tail) + content + self._encode(self.after)
        return head + self._encode(self.between_tail + text + self.after)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def _render(self, contents: list[str], add_generation_prompt: bool) -> str:
        roles = ["user", "assistant"]
        messages = [{"role": roles[i % 2], "content": c} for i, c in enumerate(contents)]
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
