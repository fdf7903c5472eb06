"""Quiet by default: vLLM, torch and transformers print nothing on stdout, and their warnings are kept aside.

At default verbosity, before those libraries load, `quiet_libraries()` sets the environment they
read at import (each only if the user has not set it):

- vLLM leaves its logger to us (`VLLM_CONFIGURE_LOGGING=0`): its errors go to stderr, its warnings
  are collected aside;
- torch's C++ warnings (NUMA binding, ...) are off (`TORCH_CPP_LOG_LEVEL=ERROR`);
- transformers says only errors (`TRANSFORMERS_VERBOSITY=error`);
- Python warnings raised inside vLLM's code (deprecations) are ignored.

vLLM's warnings are not lost: they are collected (`hidden_warnings()`), a training run writes them
to its `train.log`, and the CLI ends with a one-line count on stderr.
`TURNGYM_VERBOSE=1` (or `turngym --verbose ...`) leaves every library's logging as it is.
"""

from __future__ import annotations

import logging
import os
import warnings

VERBOSE_ENV = "TURNGYM_VERBOSE"
QUIET_ENV = {
    "VLLM_CONFIGURE_LOGGING": "0",
    "TORCH_CPP_LOG_LEVEL": "ERROR",
    "TRANSFORMERS_VERBOSITY": "error",
}


class _Collector(logging.Handler):
    """Keeps WARNING records from vLLM's loggers (not shown) for a count and the run log."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.forward_to: logging.Logger | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < 10_000:
            self.records.append(record)
        if self.forward_to is not None:
            self.forward_to.log(record.levelno, "%s: %s", record.name, record.getMessage())


_COLLECTOR = _Collector()


def is_verbose() -> bool:
    """True when `TURNGYM_VERBOSE` is set to anything but empty, 0, false or no."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def quiet_libraries() -> None:
    """Set the quiet environment defaults (see the module docstring); a no-op when verbose. Idempotent.

    Call it before vLLM, torch or transformers are imported: they read these variables once.
    """
    if is_verbose():
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", module=r"vllm(\.|$)")
    logger = logging.getLogger("vllm")
    if _COLLECTOR not in logger.handlers:
        errors = logging.StreamHandler()  # stderr
        errors.setLevel(logging.ERROR)
        errors.setFormatter(logging.Formatter("vLLM %(levelname)s: %(message)s"))
        logger.addHandler(errors)
        logger.addHandler(_COLLECTOR)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


def forward_hidden_warnings(logger: logging.Logger | None) -> None:
    """Also write each hidden warning to `logger` (a training run's `train.log`), or stop with None."""
    _COLLECTOR.forward_to = logger


def hidden_warnings() -> list[str]:
    """The messages of the warnings hidden so far, oldest first."""
    return [record.getMessage() for record in _COLLECTOR.records]


def hidden_summary() -> str | None:
    """One line counting the hidden warnings, or None if there were none."""
    messages = hidden_warnings()
    if not messages:
        return None
    return f"{len(messages)} vLLM warnings hidden; --verbose or {VERBOSE_ENV}=1 shows them"
