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
from typing import Any


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


MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed M_MMAP_THRESHOLD on 64-bit (HEAP_MAX_SIZE / 2)


@functools.cache
def _glibc() -> Any:
    """glibc, loaded once (None off glibc)."""
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def release_freed_memory() -> bool:
    """Give the pages of every freed heap block back to the OS (glibc's `malloc_trim(0)`), before and after an update.

    `keep_freed_memory` keeps freed blocks for reuse within an update. Between updates, rows of
    other lengths leave holes the next update cannot fill, so without this a run's resident memory
    grows step after step (a demo run: from 6.0 to 7.3 GiB between updates over its first 9 steps).
    The next update faults the pages it needs back in. A no-op off glibc.

    Returns:
        Whether anything was returned.
    """
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


@functools.cache
def keep_freed_memory(mmap_threshold: int | None = MMAP_THRESHOLD) -> bool:
    """Let glibc keep freed memory for reuse instead of returning it to the OS (CPU training).

    Training allocates the same large tensors (activations, gradients, logits) every micro-batch.
    By default glibc serves blocks over 128 KiB-32 MiB (a threshold that moves with what was freed)
    with fresh `mmap`s and unmaps them on free, so every micro-batch page-faults its working set in
    again: measured on a 2-core CPU, the update of a 64-episode GuessNumber step took 12% longer.
    Here blocks under `mmap_threshold` come from the heap and stay there for reuse (what a caching
    allocator does), and only larger ones (a 113 MB embedding gradient, a micro-batch's logits) are
    mapped and returned on free. Keeping those in the heap too (`mmap_threshold=None`) leaves holes
    that later steps, with rows of other lengths, cannot fill, so a whole run's resident memory grows
    step after step (README, Memory). Process-wide and idempotent; a no-op off glibc.

    Args:
        mmap_threshold: blocks of at least this many bytes are mapped (at most 32 MiB); None maps none.

    Returns:
        Whether the setting was applied.
    """
    if mmap_threshold is not None and not 0 < mmap_threshold <= MMAP_THRESHOLD:
        raise ValueError(f"mmap_threshold must be in 1..{MMAP_THRESHOLD} bytes (glibc's limit), got {mmap_threshold}")
    libc = _glibc()
    if libc is None:
        return False
    m_trim_threshold, m_mmap_threshold, m_mmap_max = -1, -3, -4  # from glibc's <malloc.h>
    if mmap_threshold is None:
        mapped = bool(libc.mallopt(m_mmap_max, 0))
    else:
        mapped = bool(libc.mallopt(m_mmap_threshold, mmap_threshold))
    return mapped and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
