"""Small helpers shared by tests (reference computations, not code under test)."""

from __future__ import annotations

import torch


def chat_prompt(tokenizer, text: str) -> list[int]:
    """Token ids of a one-message user conversation with the generation prompt."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=False
    )


@torch.no_grad()
def hf_token_logps(model, prompt: list[int], completion: list[int], temperature: float = 1.0) -> torch.Tensor:
    """Reference logprobs of `completion` given `prompt` from one transformers forward pass.

    Position t's logits predict token t+1, so completion token k is scored at position P-1+k.
    """
    ids = torch.tensor([prompt + completion])  # (1, P+C)
    logits = model(ids).logits[0].float()  # (P+C, V)
    logps = torch.log_softmax(logits / temperature, dim=-1)  # (P+C, V)
    positions = torch.arange(len(prompt) - 1, len(prompt) + len(completion) - 1)  # (C,)
    return logps[positions, torch.tensor(completion)]  # (C,)
