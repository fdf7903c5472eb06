"""A tiny random Llama with a real byte-level BPE tokenizer and chat template, made in seconds.

For tests and smoke runs of whole pipelines (vLLM, transformers, rollouts, training) on machines
without model downloads. Its outputs are noise, but every code path is the real one.
"""

from __future__ import annotations

from pathlib import Path

# A small corpus so that BPE learns merges for words that show up in prompts and env feedback.
_CORPUS = """
The quick brown fox jumps over the lazy dog. You are playing a game. Guess the number between 1 and 100.
Your guess is too high. Your guess is too low. Correct! You won. Invalid move. Try again.
What is 7 + 5? The answer is 12. Put your final answer in \\boxed{}. Reasoning: first, then, so.
Move up, down, left, right. The board is shown below. [up] [down] [left] [right] [42] [crane]
system user assistant: hello world, please think step by step and answer.
0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 + - * / = ( ) [ ] { } < > , . ; : ! ?
"""

CHAT_TEMPLATES = {
    # ChatML, as used by SmolLM2 and Qwen.
    "chatml": (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    ),
    # Llama-3 style: a begin-of-text token, header tokens around the role, <|eot_id|> ends a turn.
    "llama3": (
        "{{ '<|begin_of_text|>' }}"
        "{% for message in messages %}"
        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
        "{{ message['content'] + '<|eot_id|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
    ),
}
_END_OF_TURN = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>"}
_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]


def make_tiny_llama(
    path: str | Path,
    *,
    chat_template: str = "chatml",
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    init_std: float = 0.1,
    tie_embeddings: bool = True,
    seed: int = 0,
) -> Path:
    """Create and save a tiny random `LlamaForCausalLM` with its tokenizer.

    Args:
        path: output directory (created).
        chat_template: `"chatml"` or `"llama3"`.
        vocab_size: target BPE vocabulary size (byte alphabet + merges + special tokens).
        hidden_size: model width; heads are 32-dimensional.
        num_layers: decoder layers.
        init_std: weight init std. Larger than usual (0.02) so the output distribution is peaked
            rather than nearly uniform, which makes logprob comparisons in tests discriminating.
        tie_embeddings: share the input embedding and LM head (as SmolLM2 does).
        seed: torch seed for the weights (the tokenizer is deterministic).

    Returns:
        The directory, loadable by transformers and vLLM.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if chat_template not in CHAT_TEMPLATES:
        raise ValueError(f"chat_template must be one of {sorted(CHAT_TEMPLATES)}, got {chat_template!r}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable: any text works
        show_progress=False,
    )
    bpe.train_from_iterator([_CORPUS] * 4, trainer)
    end_of_turn = _END_OF_TURN[chat_template]
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=end_of_turn, pad_token="<|endoftext|>")
    tokenizer.chat_template = CHAT_TEMPLATES[chat_template]
    tokenizer.save_pretrained(path)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=hidden_size // 32,
        num_key_value_heads=max(1, hidden_size // 64),
        head_dim=32,
        max_position_embeddings=2048,
        initializer_range=init_std,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids(end_of_turn),
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tie_embeddings,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path
