"""Which precision the hardware computes fast: bf16 only where it is native.

On CPUs without AVX-512 BF16 or AMX, bf16 is emulated: measured on a 2-core AVX2 machine, a bf16
matmul ran at 0.3 GFLOP/s against 145 GFLOP/s in fp32, and vLLM decoded 5x slower in bf16 than in
fp32. So "auto" precision means bf16 on CUDA GPUs that support it and on CPUs with native bf16,
fp32 everywhere else.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path


@functools.cache
def native_bf16(device_type: str = "cpu") -> bool:
    """Whether `device_type` ("cpu" or "cuda") computes bf16 natively rather than emulating it.

    CUDA: `torch.cuda.is_bf16_supported()`. CPU: the `avx512_bf16` or `amx_bf16` flag in
    /proc/cpuinfo (oneDNN's fast bf16 kernels need one of them).
    """
    if device_type == "cuda":
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def resolve_dtype(dtype: str, device_type: str) -> str:
    """`"auto"` becomes `"bfloat16"` where bf16 is native on `device_type`, else `"float32"`."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if native_bf16(device_type) else "float32"
