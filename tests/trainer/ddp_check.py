"""Run under `accelerate launch --multi_gpu --num_processes 2` (CPU: gloo): the 2-process gradient equals one process's.

Both processes build the same tiny model and the same synthetic step (3 groups: the two ranks get
different numbers of micro-batches), run the trainer's `update` with SGD (lr 1, no clipping), so
the weight change IS minus the gradient, once over both processes (DDP) and once alone. Each rank
writes what it saw to OUT_DIR/rank<r>.json.

Usage: accelerate launch --multi_gpu --num_processes 2 tests/trainer/ddp_check.py MODEL_DIR OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from tests.trainer.support import synthetic_rows  # noqa: E402
from turngym.algos import GRPO  # noqa: E402
from turngym.trainer.config import CorrectionConfig, OptimizerConfig  # noqa: E402
from turngym.trainer.distributed import Processes  # noqa: E402
from turngym.trainer.policy import TokenScorer, load_model  # noqa: E402
from turngym.trainer.update import Learner, update  # noqa: E402


def gradient(procs: Processes, model_dir: str) -> tuple[torch.Tensor, dict]:
    model, _ = load_model(model_dir, torch.device("cpu"))
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    scorer = procs.prepare(TokenScorer(model))
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    learner = Learner(scorer, model, optimizer, schedule, None, False, 1.0)
    config = OptimizerConfig(grad_clip=0.0, micro_batch_tokens=200)
    metrics = update(learner, GRPO(), synthetic_rows(), config, CorrectionConfig(mode="none"), procs).to_metrics()
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    return before - after, metrics  # SGD with lr 1: the gradient


if __name__ == "__main__":
    model_dir, out_dir = sys.argv[1], Path(sys.argv[2])
    procs = Processes.from_environment()
    assert procs.distributed and procs.world_size == 2, "launch with two processes"
    together, metrics = gradient(procs, model_dir)
    alone, _ = gradient(Processes(), model_dir)
    both = procs.gather(together)
    report = {
        "rank": procs.rank,
        "max_abs_gradient": float(alone.abs().max()),
        "max_diff_to_single_process": float((together - alone).abs().max()),
        "max_diff_between_ranks": float((both[0] - both[1]).abs().max()),
        "micro_batches": metrics["micro_batches"],
        "tokens_trained": metrics["tokens_trained"],
    }
    (out_dir / f"rank{procs.rank}.json").write_text(json.dumps(report))
