"""turngym.trainer: recipes, the update loop, checkpoints, metrics and evaluation."""
