"""turngym.envs: text environments, their registration and the checker."""
