"""A reward for the RL tests, importable as ``rl_reward_helper:filler_first_share``: the share of
the twelve R steps written filler-first (``_v``). It varies within a group at temperature 1, so
every group has a non-zero advantage and the policy must move."""


def filler_first_share(item, completion: str) -> float:
    return sum(completion[11 + 2 * i] == "_" for i in range(12)) / 12
