"""HFGenerator: transformers generate behind the Generator contract."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.helpers import chat_prompt, hf_token_logps
from turngym.agent import Generator, HFGenerator, SamplingParams
from turngym.agent.hf_generator import _top_p_filter


@pytest.fixture(scope="module")
def hf_gen(tiny_model_dir: Path) -> HFGenerator:
    return HFGenerator(str(tiny_model_dir), dtype="float32", batch_size=4)


@pytest.fixture(scope="module")
def prompts(hf_gen: HFGenerator) -> list[list[int]]:
    # different lengths, so left padding is exercised
    return [chat_prompt(hf_gen.tokenizer, q) for q in ["Hi", "What is 7 + 5? Think step by step first."]]


def test_is_a_generator(hf_gen) -> None:
    assert isinstance(hf_gen, Generator)


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 1.0), (1.0, 0.9)])
def test_logprobs_are_those_of_the_sampling_distribution(hf_gen, prompts, tiny_model_dir, temperature, top_p):
    """Unpadded fp32 forward pass on the same tokens gives the same logprobs (no top-p: exact
    softmax; with top-p the kept tokens' logprobs are renormalised over the nucleus, so >=)."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    completions = hf_gen.generate(
        prompts, SamplingParams(n=3, temperature=temperature, top_p=top_p, max_tokens=16, seed=0)
    )
    assert len(completions) == 6  # batch_size 4: two generate calls
    for k, c in enumerate(completions):
        ref = hf_token_logps(model, prompts[k // 3], c.token_ids, temperature)  # (C,)
        got = torch.tensor(c.logprobs)  # (C,)
        if top_p == 1.0:
            torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)
        else:
            assert bool((got >= ref - 1e-4).all())
        assert all(math.isfinite(x) for x in c.logprobs)


def test_seed_makes_a_call_reproducible(hf_gen, prompts) -> None:
    sampling = SamplingParams(n=2, temperature=1.0, max_tokens=12, seed=7)
    first, again = hf_gen.generate(prompts, sampling), hf_gen.generate(prompts, sampling)
    assert [c.token_ids for c in first] == [c.token_ids for c in again]
    other = hf_gen.generate(prompts, SamplingParams(n=2, temperature=1.0, max_tokens=12, seed=8))
    assert [c.token_ids for c in other] != [c.token_ids for c in first]


def test_finished_rows_are_cut_at_their_stop_token(hf_gen, prompts) -> None:
    """generate pads rows that finished early; each completion must end at its own stop token."""
    stop_ids = set(range(100, 120)) | {hf_gen.tokenizer.eos_token_id}  # ~4% of the vocabulary
    sampling = SamplingParams(n=8, temperature=1.0, max_tokens=40, stop_token_ids=tuple(range(100, 120)), seed=0)
    completions = hf_gen.generate(prompts, sampling)
    assert {c.finish_reason for c in completions} == {"stop", "length"}  # both kinds in one batch
    for c in completions:
        assert len(c.token_ids) == len(c.logprobs)
        if c.finish_reason == "stop":
            assert c.token_ids[-1] in stop_ids and not stop_ids & set(c.token_ids[:-1])
        else:
            assert len(c.token_ids) == 40 and not stop_ids & set(c.token_ids)


def test_stop_strings(hf_gen) -> None:
    prompt = chat_prompt(hf_gen.tokenizer, "Say hello world to me")
    decode, eos = hf_gen.tokenizer.decode, hf_gen.tokenizer.eos_token_id
    stopped = 0
    for c in hf_gen.generate([prompt], SamplingParams(n=8, temperature=1.0, max_tokens=64, stop=(" ",), seed=0)):
        if c.finish_reason == "stop" and c.token_ids[-1] != eos:
            stopped += 1
            assert c.text.endswith(" ") and c.text.count(" ") == 1
            assert " " in decode(c.token_ids) and " " not in decode(c.token_ids[:-1])
    assert stopped > 0


def test_load_weights_copies_in_place_and_rejects_unknown_names(tiny_model_dir) -> None:
    gen = HFGenerator(str(tiny_model_dir), dtype="float32")
    name = "model.norm.weight"
    gen.load_weights([(name, torch.full_like(gen.model.state_dict()[name], 2.0))])
    assert bool((dict(gen.model.named_parameters())[name] == 2.0).all())
    with pytest.raises(KeyError, match="no weight named 'not.a.weight'"):
        gen.load_weights([("not.a.weight", torch.zeros(1))])


def test_top_p_keeps_the_smallest_nucleus() -> None:
    scores = torch.log(torch.tensor([[0.2, 0.5, 0.3]]))  # (1, 3)
    # sorted: 0.5, 0.3, 0.2; mass before each: 0, 0.5, 0.8
    assert torch.isinf(_top_p_filter(scores, 0.7)).tolist() == [[True, False, False]]
    assert torch.isinf(_top_p_filter(scores, 0.5)).tolist() == [[True, False, True]]
    assert torch.isinf(_top_p_filter(scores, 1.0 - 1e-9)).tolist() == [[False, False, False]]


def test_sampling_params_validate() -> None:
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(ValueError, match="n must be"):
        SamplingParams(n=0)
    assert SamplingParams(stop="]").stop == ("]",)
