"""turngym.envs: text environments, their registration and the checker.

Every built-in id is registered below, by hand, so `grep` finds it. Entry points are imported only
when an env is made: importing this package does not import textarena, reasoning_gym or math_verify.
"""

from turngym.envs.adapter import GymnasiumTextEnv
from turngym.envs.checker import CheckOptions, CheckResult, EnvCheckError, check_env, run_checks
from turngym.envs.core import AnyText, TextEnv, Turn, count_bracketed, last_boxed, last_bracketed, parse_int
from turngym.envs.registration import (
    REASONING_GYM_PREFIX,
    TEXTARENA_PREFIX,
    EnvInfo,
    UnknownEnvError,
    env_name,
    make,
    register,
    registry,
)

register(
    "turngym/MathVerify-v0",
    "turngym.envs.math_env:MathVerify",
    "Math problems (procedural arithmetic/word problems, JSONL, reasoning-gym) checked by math-verify",
)
register(
    "turngym/Game2048-v0",
    "turngym.envs.game2048:Game2048",
    "2048: slide and merge tiles to reach the target tile (size and target as kwargs)",
)
register(
    "turngym/GuessNumber-v0",
    "turngym.envs.guess_number:GuessNumber",
    "Guess a secret number in a range; feedback says higher or lower",
)
register(
    "turngym/WordGuess-v0",
    "turngym.envs.word_guess:WordGuess",
    "Wordle-style: guess a five-letter word with per-letter feedback",
)
register(
    "turngym/Mastermind-v0",
    "turngym.envs.mastermind:Mastermind",
    "Find a secret digit code from black/white peg feedback",
)

__all__ = [
    "REASONING_GYM_PREFIX",
    "TEXTARENA_PREFIX",
    "AnyText",
    "CheckOptions",
    "CheckResult",
    "EnvCheckError",
    "EnvInfo",
    "GymnasiumTextEnv",
    "TextEnv",
    "Turn",
    "UnknownEnvError",
    "check_env",
    "env_name",
    "last_boxed",
    "last_bracketed",
    "count_bracketed",
    "make",
    "parse_int",
    "register",
    "registry",
    "run_checks",
]
