"""The real vLLM engine (CPU build) behind the Generator contract, checked against transformers.

Tolerance for vLLM's bf16 logprobs against an fp32 transformers forward pass on the same tokens:
max |diff| <= 0.1 / T and mean |diff| <= 0.02 / T nats per token. Why: bf16 keeps 8 significand
bits, so each rounding (weights on load, every matmul input and output) has relative error up to
2^-8 ~ 0.4%. About ten roundings lie between the weights and the logits of this two-layer model, so
the logits may be off by a few percent of their magnitude (|logit| <= ~3.5 here), and a logprob,
which is a logit minus a log-sum-exp, by up to ~0.1 nats; typical errors are ~5x smaller. Dividing
the logits by the temperature T scales the error by 1/T. Measured on this model: max 0.036-0.047,
mean 0.007-0.009 at T = 1. The weight-sync tests move logprobs by far more than the mean band.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.helpers import chat_prompt, hf_token_logps
from turngym.agent import Generator, HFGenerator, SamplingParams, VLLMGenerator

MAX_TOL, MEAN_TOL = 0.1, 0.02
QUESTIONS = ["Guess the number between 1 and 100.", "What is 7 + 5?", "Move up, down, left or right."]


@pytest.fixture(scope="module")
def prompts(vllm_tiny: VLLMGenerator) -> list[list[int]]:
    return [chat_prompt(vllm_tiny.tokenizer, q) for q in QUESTIONS]


@pytest.fixture(scope="module")
def hf_tiny(tiny_model_dir: Path):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def _max_and_mean_diff(model, prompts, completions, n, temperature):
    diffs = []
    for k, completion in enumerate(completions):
        ref = hf_token_logps(model, prompts[k // n], completion.token_ids, temperature)  # (C,)
        diffs.append((ref - torch.tensor(completion.logprobs)).abs())  # (C,)
    all_diffs = torch.cat(diffs)
    return all_diffs.max().item(), all_diffs.mean().item()


def test_is_a_generator(vllm_tiny: VLLMGenerator) -> None:
    assert isinstance(vllm_tiny, Generator)


def test_sampled_ids_and_logprobs_come_back(vllm_tiny: VLLMGenerator, prompts) -> None:
    sampling = SamplingParams(n=3, temperature=1.0, max_tokens=12, seed=0)
    completions = vllm_tiny.generate(prompts, sampling)
    assert len(completions) == len(prompts) * 3
    eos = vllm_tiny.tokenizer.eos_token_id
    for c in completions:
        assert 1 <= len(c.token_ids) == len(c.logprobs) <= 12
        assert all(math.isfinite(lp) and lp <= 0 for lp in c.logprobs)
        if c.finish_reason == "length":
            assert len(c.token_ids) == 12
        else:
            assert c.finish_reason == "stop" and c.token_ids[-1] == eos  # the sampled EOS is kept
        assert c.text == vllm_tiny.tokenizer.decode(c.token_ids, skip_special_tokens=True)
    assert len({tuple(c.token_ids) for c in completions}) > 1  # sampling, not one fixed answer


def test_seeded_sampling_is_reproducible_and_independent_of_batching(vllm_tiny, prompts) -> None:
    sampling = SamplingParams(n=2, temperature=1.0, max_tokens=10, seed=10)
    first = vllm_tiny.generate(prompts, sampling)
    again = vllm_tiny.generate(prompts, sampling)
    assert [c.token_ids for c in first] == [c.token_ids for c in again]
    # completion j of prompt i uses seed + i*n + j: prompt 1 alone with seed 12 gives the same two
    alone = vllm_tiny.generate([prompts[1]], SamplingParams(n=2, temperature=1.0, max_tokens=10, seed=12))
    assert [c.token_ids for c in alone] == [c.token_ids for c in first[2:4]]
    other = vllm_tiny.generate(prompts, SamplingParams(n=2, temperature=1.0, max_tokens=10, seed=11))
    assert [c.token_ids for c in other] != [c.token_ids for c in first]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_match_a_transformers_forward_pass(vllm_tiny, prompts, hf_tiny, temperature) -> None:
    """vLLM reports the logprobs of the distribution it sampled from: log_softmax(logits / T)."""
    completions = vllm_tiny.generate(prompts, SamplingParams(n=4, temperature=temperature, max_tokens=32, seed=1))
    max_diff, mean_diff = _max_and_mean_diff(hf_tiny, prompts, completions, 4, temperature)
    assert max_diff <= MAX_TOL / temperature
    assert mean_diff <= MEAN_TOL / temperature


def test_load_weights_changes_the_policy_and_restores_it(vllm_tiny, prompts, hf_tiny, tiny_model_dir) -> None:
    """Perturbed weights in, perturbed logprobs out; originals in, original logprobs out.

    The perturbed model is synced from `named_parameters()` (what a trainer hands over), where the
    tied embedding/LM-head tensor appears once; the originals from `state_dict()`, where it appears
    under both names.
    """
    original = {name: t.clone() for name, t in hf_tiny.state_dict().items()}
    hf_perturbed = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    noise = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in hf_perturbed.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=noise))
    assert "lm_head.weight" not in dict(hf_perturbed.named_parameters())  # tied, listed once
    sampling = SamplingParams(n=2, temperature=1.0, max_tokens=24, seed=3)
    try:
        vllm_tiny.load_weights(hf_perturbed.named_parameters())
        after = vllm_tiny.generate(prompts, sampling)
        max_diff, mean_diff = _max_and_mean_diff(hf_perturbed, prompts, after, 2, 1.0)
        assert max_diff <= MAX_TOL and mean_diff <= MEAN_TOL  # matches the perturbed model
        _, mean_vs_original = _max_and_mean_diff(hf_tiny, prompts, after, 2, 1.0)
        assert mean_vs_original > 10 * MEAN_TOL  # and no longer the original one
    finally:
        vllm_tiny.load_weights(original.items())
    restored = vllm_tiny.generate(prompts, sampling)
    max_diff, mean_diff = _max_and_mean_diff(hf_tiny, prompts, restored, 2, 1.0)
    assert max_diff <= MAX_TOL and mean_diff <= MEAN_TOL


def test_tied_lm_head_follows_the_embedding(vllm_tiny, prompts, hf_tiny, tiny_model_dir) -> None:
    """Changing only the shared embedding must change the LM head inside vLLM too."""
    hf_changed = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        hf_changed.model.embed_tokens.weight.mul_(-1.0)  # flips every logit's sign through the head
    sampling = SamplingParams(temperature=1.0, max_tokens=16, seed=4)
    try:
        vllm_tiny.load_weights([("model.embed_tokens.weight", hf_changed.model.embed_tokens.weight)])
        max_diff, _ = _max_and_mean_diff(hf_changed, prompts, vllm_tiny.generate(prompts, sampling), 1, 1.0)
        assert max_diff <= MAX_TOL
    finally:
        vllm_tiny.load_weights(hf_tiny.state_dict().items())


def test_load_weights_accepts_parameters_that_require_grad(vllm_tiny, prompts, hf_tiny) -> None:
    """A trainer hands over `model.named_parameters()`, which require grad, directly."""
    hf_tiny.requires_grad_(True)
    try:
        vllm_tiny.load_weights(hf_tiny.named_parameters())
    finally:
        hf_tiny.requires_grad_(False)
    completions = vllm_tiny.generate(prompts, SamplingParams(temperature=1.0, max_tokens=8, seed=5))
    max_diff, _ = _max_and_mean_diff(hf_tiny, prompts, completions, 1, 1.0)
    assert max_diff <= MAX_TOL


def test_deleting_another_engine_does_not_break_this_one(vllm_tiny, prompts, tiny_model_dir) -> None:
    """An engine's shutdown tears down vLLM's process-wide parallel state; the survivor restores it."""
    import gc

    sampling = SamplingParams(temperature=1.0, max_tokens=8, seed=9)
    before = vllm_tiny.generate(prompts, sampling)
    other = VLLMGenerator(str(tiny_model_dir), max_model_len=256, kv_cache_gib=0.0625)
    assert other.generate(prompts, sampling)
    del other
    gc.collect()
    assert [c.token_ids for c in vllm_tiny.generate(prompts, sampling)] == [c.token_ids for c in before]
    vllm_tiny.load_weights(AutoModelForCausalLM.from_pretrained(tiny_model_dir).named_parameters())
    assert [c.token_ids for c in vllm_tiny.generate(prompts, sampling)] == [c.token_ids for c in before]


def test_stop_strings_end_the_completion_and_stay_in_it(vllm_tiny) -> None:
    prompt = chat_prompt(vllm_tiny.tokenizer, "Say hello world to me")
    sampling = SamplingParams(n=8, temperature=1.0, max_tokens=64, stop=(" ",), seed=0)
    decode, eos = vllm_tiny.tokenizer.decode, vllm_tiny.tokenizer.eos_token_id
    stopped = 0
    for c in vllm_tiny.generate([prompt], sampling):
        if c.finish_reason == "stop" and c.token_ids[-1] != eos:
            stopped += 1
            assert c.text.endswith(" ") and c.text.count(" ") == 1  # cut right after the first stop string
            assert " " in decode(c.token_ids) and " " not in decode(c.token_ids[:-1])  # last token holds it
    assert stopped > 0


def test_bad_prompts_are_clear_errors(vllm_tiny) -> None:
    with pytest.raises(ValueError, match="empty"):
        vllm_tiny.generate([[]], SamplingParams())
    with pytest.raises(ValueError, match="max_model_len is 1024"):
        vllm_tiny.generate([[5] * 1024], SamplingParams())


@pytest.fixture(scope="module")
def vllm_tiny_fp32(tiny_model_dir: Path):
    generator = VLLMGenerator(str(tiny_model_dir), dtype="float32", max_model_len=1024, kv_cache_gib=0.125)
    yield generator
    del generator


def test_hf_and_vllm_give_the_same_greedy_tokens(vllm_tiny_fp32, tiny_model_dir, prompts) -> None:
    """Same model, same prompt, greedy: identical tokens. In fp32 both engines agree to ~1e-6 in
    logprobs, so no near-tie can flip an argmax (in bf16, long generations may drift apart)."""
    hf = HFGenerator(str(tiny_model_dir), dtype="float32")
    greedy = SamplingParams(temperature=0.0, max_tokens=32)
    from_vllm = vllm_tiny_fp32.generate(prompts, greedy)
    from_hf = hf.generate(prompts, greedy)
    assert [c.token_ids for c in from_vllm] == [c.token_ids for c in from_hf]
    assert [c.finish_reason for c in from_vllm] == [c.finish_reason for c in from_hf]
    for a, b in zip(from_vllm, from_hf, strict=True):
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-4


def test_hf_and_vllm_agree_on_the_default_model(smollm2_dir: Path) -> None:
    """SmolLM2-135M in the default ("auto") dtype on both engines: the same greedy answers to short prompts."""
    vllm_gen = VLLMGenerator(str(smollm2_dir), max_model_len=512, kv_cache_gib=0.25)
    hf = HFGenerator(str(smollm2_dir))
    prompts = [chat_prompt(hf.tokenizer, q) for q in ["What is 7+5?", "What is the capital of France?"]]
    greedy = SamplingParams(temperature=0.0, max_tokens=24)
    from_vllm, from_hf = vllm_gen.generate(prompts, greedy), hf.generate(prompts, greedy)
    assert [c.token_ids for c in from_vllm] == [c.token_ids for c in from_hf]
    assert "12" in from_vllm[0].text and "Paris" in from_vllm[1].text


def test_a_refused_weight_load_names_the_tensor_and_leaves_the_engine_usable(vllm_tiny, prompts, hf_tiny) -> None:
    """Wrong shapes, names or dtypes are refused before vLLM sees them: generate and a valid reload still work."""
    sampling = SamplingParams(temperature=1.0, max_tokens=12, seed=6)
    before = vllm_tiny.generate(prompts, sampling)
    weights = dict(hf_tiny.state_dict())
    name = "model.layers.0.mlp.down_proj.weight"
    rows, cols = weights[name].shape
    bad = {
        "transposed": ({**weights, name: weights[name].T}, f"load_weights: {name} has shape ({cols}, {rows}), "
                                                            f"the engine expects ({rows}, {cols})"),
        "1-D": ({**weights, name: weights[name].flatten()}, f"load_weights: {name} has shape ({rows * cols},)"),
        "unknown name": ({f"{name}s": weights[name]},
                         f"load_weights: the engine's model has no parameter {name}s. Did you mean {name}?"),
        "integer": ({name: weights[name].to(torch.int32)}, f"load_weights: {name} is torch.int32, not a floating"),
    }  # fmt: skip
    for case, (given, message) in bad.items():
        with pytest.raises(ValueError) as caught:
            vllm_tiny.load_weights(given.items())
        assert str(caught.value).startswith(message), case
        assert "\n" not in str(caught.value)
        after = vllm_tiny.generate(prompts, sampling)  # the engine still serves, with the same weights
        assert [c.token_ids for c in after] == [c.token_ids for c in before], case
    vllm_tiny.load_weights(weights.items())  # and a valid load still goes through
    assert [c.token_ids for c in vllm_tiny.generate(prompts, sampling)] == [c.token_ids for c in before]
