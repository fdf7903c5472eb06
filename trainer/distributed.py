"""Processes: accelerate's state, plus the few collective operations the trainer needs.

Each process (rank) owns a vLLM engine and collects its share of a step's groups. The groups are
then all-gathered (token ids and rewards: a few hundred kilobytes), so every rank runs the
objective's `filter` and `advantages` over the whole step and computes the same step-global counts
(`StepTotals`, GPG's alpha, DAPO's kept groups, GFPO's adaptive-k history). Each rank then
back-propagates its share of the micro-batches; the loss of every micro-batch is already divided by
the step-global counts, so the sum over ranks is the single-process loss, and DDP's gradient
average is undone by scaling the loss by the world size.

Launch: `accelerate launch --multi_gpu --num_processes N -m turngym train ...` (torchrun under
the hood; on a machine without GPUs the trainer runs the processes on CPU with gloo), or
`torchrun --nproc_per_node N -m turngym train ...`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any

import torch
from torch import nn


class Processes:
    """The run's processes.

    Args:
        accelerator: an `accelerate.Accelerator` of a multi-process launch, or None for a single
            process (no accelerate, no process group). `Processes.from_environment()` picks.
    """

    def __init__(self, accelerator: Any = None) -> None:
        self.accelerator = accelerator
        self.distributed = accelerator is not None and accelerator.num_processes > 1
        if self.distributed:
            self.rank, self.world_size = accelerator.process_index, accelerator.num_processes
            self.device = accelerator.device
        else:
            self.rank, self.world_size = 0, 1
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.is_main = self.rank == 0

    @classmethod
    def from_environment(cls) -> Processes:
        """Several processes when started by accelerate/torchrun (WORLD_SIZE > 1), else one."""
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import Accelerator

            return cls(Accelerator(cpu=not torch.cuda.is_available()))
        if os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true" and "MASTER_PORT" in os.environ:
            warnings.warn(
                "`accelerate launch --cpu` started a single process (accelerate's simple launcher ignores "
                "--num_processes without an MPI hostfile). For N processes on CPU use "
                "`accelerate launch --multi_gpu --num_processes N -m turngym train ...` "
                "or `torchrun --nproc_per_node N`.",
                stacklevel=2,
            )
        return cls()

    def engine_kwargs(self) -> dict[str, Any]:
        """Extra `vllm.LLM` arguments for this rank's engine.

        With several processes, torch.distributed already holds the default process group, which
        vLLM's in-process engine would otherwise create for itself; its `external_launcher`
        backend joins the existing group instead (each rank a tensor-parallel group of one).
        """
        if not self.distributed:
            return {}
        os.environ.setdefault("RANK", str(self.rank))
        os.environ.setdefault("LOCAL_RANK", str(self.accelerator.local_process_index))
        return {"distributed_executor_backend": "external_launcher"}

    def prepare(self, module: nn.Module) -> nn.Module:
        """Wrap the trained module for gradient synchronisation (DDP, or FSDP from an accelerate config)."""
        return self.accelerator.prepare(module) if self.distributed else module

    def no_sync(self, module: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        """Accumulate gradients locally unless `sync` (the last micro-batch of an optimiser step)."""
        if sync or not self.distributed:
            return contextlib.nullcontext()
        return self.accelerator.no_sync(module)

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(values, value)
        return values

    def any(self, flag: bool) -> bool:
        """True on every rank if `flag` is True on any rank."""
        return any(self.gather(bool(flag)))

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.distributed:
            torch.distributed.barrier()

    def share(self, count: int) -> range:
        """This rank's part of `count` items: a contiguous block, sizes differing by at most one."""
        base, extra = divmod(count, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return range(start, start + base + (self.rank < extra))
