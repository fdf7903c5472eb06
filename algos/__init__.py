"""turngym.algos: GRPO-family objectives as small pure functions and named objectives."""
