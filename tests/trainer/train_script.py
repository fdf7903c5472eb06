"""Run `turngym.trainer.train` in a subprocess with the test envs registered (for kill/resume/multi-process tests).

Usage: python tests/trainer/train_script.py RECIPE_JSON [KEY=VALUE ...]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.trainer.support import register_test_envs  # noqa: E402
from turngym.trainer import load_recipe, train  # noqa: E402

if __name__ == "__main__":
    register_test_envs()
    result = train(load_recipe(json.loads(Path(sys.argv[1]).read_text()), sys.argv[2:]))
    sys.exit(130 if result.interrupted else 0)
