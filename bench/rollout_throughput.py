"""Rollout throughput: `collect_groups` against raw `vllm.LLM.generate` on the same work.

SmolLM2-135M (the default model), 8 groups x 4 episodes of GuessNumber, up to 6 turns. The
baseline, measured in the same run on the same engine: the same conversations through raw
`llm.generate` calls, one per turn as the rollout makes, each turn generating exactly as many
tokens as the rollout sampled (`max_tokens` = that length, `ignore_eos`) and then appending the
episode's own template and feedback ids, so prompts grow and reuse the prefix cache as in the
rollout. What remains is the rollout's own cost: envs, chat deltas, records. The ratio is
rollout tokens/s over raw tokens/s; target >= 0.9.

    .venv/bin/python bench/rollout_throughput.py [--groups 8] [--group-size 4] [--turns 6]

The last line is `ratio: X`.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--env", default="turngym/GuessNumber-v0")
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    from vllm import SamplingParams as RawSamplingParams
    from vllm.inputs import TokensPrompt

    from turngym.agent import SamplingParams, VLLMGenerator, collect_groups

    generator = VLLMGenerator(args.model, max_model_len=2048, kv_cache_gib=2.0)
    sampling = SamplingParams(temperature=1.0, max_tokens=args.max_tokens)

    def rollout(seeds):
        return collect_groups(
            args.env, seeds, args.group_size, generator, sampling=sampling, max_turns=args.turns, progress=False
        )

    rollout(range(1000, 1000 + args.groups))  # warm-up (first-call costs)
    generator.llm.reset_prefix_cache()
    start = time.perf_counter()
    groups = rollout(range(args.groups))
    rollout_seconds = time.perf_counter() - start
    trajectories = [t for g in groups for t in g.trajectories]
    rollout_tokens = sum(t.num_sampled_tokens for t in trajectories)

    # The same conversations through raw vLLM: turn k of each episode generates as many tokens as
    # the rollout sampled, then the episode's own template+feedback ids are appended, so prompts
    # grow (and hit the prefix cache) exactly as in the rollout.
    generator.llm.reset_prefix_cache()
    turns = max(t.num_turns for t in trajectories)
    conversations = [t.token_ids[: t.prompt_length] for t in trajectories]
    raw_tokens, raw_seconds = 0, 0.0
    for k in range(turns):
        live = [i for i, t in enumerate(trajectories) if t.num_turns > k]
        lengths = [trajectories[i].turns[k].end - trajectories[i].turns[k].start for i in live]
        prompts = [TokensPrompt(prompt_token_ids=conversations[i]) for i in live]
        params = [RawSamplingParams(temperature=1.0, max_tokens=n, ignore_eos=True) for n in lengths]
        start = time.perf_counter()
        outputs = generator.llm.generate(prompts, params, use_tqdm=False)
        raw_seconds += time.perf_counter() - start
        for i, output in zip(live, outputs, strict=True):
            t = trajectories[i]
            following = t.turns[k + 1].start if k + 1 < t.num_turns else t.turns[k].end
            conversations[i] = (
                conversations[i] + list(output.outputs[0].token_ids) + t.token_ids[t.turns[k].end : following]
            )
            raw_tokens += len(output.outputs[0].token_ids)

    rollout_rate, raw_rate = rollout_tokens / rollout_seconds, raw_tokens / raw_seconds
    won = sum(bool(t.metrics.get("won")) for t in trajectories)
    print(
        f"model {args.model}, {args.env}: {len(groups)} groups x {args.group_size} episodes, {turns} turns max, "
        f"{sum(t.num_turns for t in trajectories)} turns, {won} won"
    )
    print(f"collect_groups: {rollout_tokens} tokens in {rollout_seconds:.2f} s = {rollout_rate:.1f} tokens/s")
    print(f"raw vllm.LLM.generate (same batches): {raw_tokens} tokens in {raw_seconds:.2f} s = {raw_rate:.1f} tokens/s")
    print(f"ratio: {rollout_rate / raw_rate:.3f}")


if __name__ == "__main__":
    main()
