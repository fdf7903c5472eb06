"""LoRA adapters on the trainer's model (`model.lora` in recipes), built with peft.

Three things the loop needs from an adapted model, and nothing else:

- `add_adapter`: wrap the causal LM so that only the adapter's matrices train (peft's
  `get_peft_model`); the frozen base weights stay fp32, like full fine-tuning's.
- `merged_weights`: the Hugging Face-named weights the sampler must change to sample from base +
  adapter: `W + scaling * B @ A` for every adapted linear layer, computed apart from the model (its
  own parameters are not touched). Layers the sampler fuses (q/k/v, gate/up) are sent whole.
- `base_model_only`: a context in which the model computes without its adapter (the KL reference,
  the initial policy, without a second copy of the model).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

# Every linear layer of attention and MLP in Llama-family models (Llama, Qwen2/3, Mistral, SmolLM2).
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Linear layers that vLLM computes as one fused layer: a weight sync sends every member, or none.
FUSED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def add_adapter(
    model: nn.Module, r: int, alpha: float, dropout: float = 0.0, target_modules: tuple[str, ...] = ALL_LINEAR
) -> nn.Module:
    """`model` wrapped by peft with a fresh LoRA adapter; only the adapter's parameters require grad.

    `B` starts at zero (peft's default), so the wrapped model computes exactly what `model` did.

    Raises:
        ValueError: a target module the model does not have (one line, with the names it has).
    """
    from peft import LoraConfig, get_peft_model

    missing = [name for name in target_modules if not _has_module(model, name)]
    if missing:
        have = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"model.lora.target_modules: the model has no {', '.join(missing)}; its linear layers: {have}")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules))
    return get_peft_model(model, config)


def is_adapted(model: nn.Module) -> bool:
    """Whether `model` carries a peft adapter."""
    from peft import PeftModel

    return isinstance(model, PeftModel)


def merged_weights(model: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """(Hugging Face name, merged weight) of every linear layer whose weight the adapter changes.

    Members of a fused group (`FUSED`) that carry no adapter are sent with their base weight, so the
    sampler's fused layer is always loaded whole. Nothing else (embeddings, norms) is sent: LoRA
    does not change it.
    """
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    modules = dict(base.named_modules())
    adapted = {name for name, module in modules.items() if isinstance(module, LoraLayer)}
    to_send = set(adapted)
    for name in adapted:
        parent, _, leaf = name.rpartition(".")
        for group in FUSED:
            if leaf in group:
                to_send |= {f"{parent}.{member}" for member in group if f"{parent}.{member}" in modules}
    for name in sorted(to_send):
        yield f"{name}.weight", _merged(modules[name])


@torch.no_grad()
def _merged(module: nn.Module) -> Tensor:
    """A linear layer's weight with its active adapters added, as a new tensor."""
    from peft.tuners.lora import LoraLayer

    if not isinstance(module, LoraLayer):
        return module.weight.detach()
    weight = module.get_base_layer().weight  # (out, in)
    merged = weight.detach().float().clone()  # (out, in)
    for adapter in module.active_adapters:
        if adapter in module.lora_A:
            merged += module.get_delta_weight(adapter).float()  # (out, in) scaling * B @ A
    return merged


@contextlib.contextmanager
def base_model_only(model: nn.Module) -> Iterator[None]:
    """Compute without the adapter inside the block (peft's `disable_adapter`); a no-op without one."""
    if not is_adapted(model):
        yield
        return
    with model.disable_adapter():
        yield


class WithoutAdapter(nn.Module):
    """A scorer of the adapted model with its adapter switched off: the KL reference, without a second copy.

    Args:
        scorer: the trainer's `TokenScorer` on the adapted model (not DDP-wrapped: the reference
            runs without gradients).
    """

    def __init__(self, scorer: nn.Module) -> None:
        super().__init__()
        self.scorer = scorer

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        """The scorer's output under the base model (see `TokenScorer.forward`)."""
        with base_model_only(self.scorer.model):
            return self.scorer(*args, **kwargs)


def sampler_weights(model: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """What a weight sync sends: every parameter, or, with an adapter, the merged layers it changes."""
    if is_adapted(model):
        return merged_weights(model)
    return iter(model.named_parameters())


def load_adapter(model: nn.Module, checkpoint: str | Path) -> nn.Module:
    """`model` (the base) with the trainable adapter saved in `checkpoint` (peft's format)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(checkpoint), is_trainable=True)


def hf_parameter_name(name: str) -> str:
    """A peft parameter name as the base model names it (`base_model.model.x.base_layer.weight` -> `x.weight`)."""
    return name.removeprefix("base_model.model.").replace(".base_layer.", ".")


def _has_module(model: nn.Module, leaf: str) -> bool:
    return any(name.rsplit(".", 1)[-1] == leaf for name, _ in model.named_modules())
