import pytest

from unmask.decoding.schedule import (
    block_schedule,
    dream_schedule,
    fixed_schedule,
    linear_round_schedule,
    linear_schedule,
    split_steps,
)
from unmask.errors import UnmaskError


def test_linear_round_reference_example():
    assert linear_round_schedule(32, 12) == [3, 3, 3, 3, 3, 2, 3, 2, 3, 2, 3, 2]
    assert linear_round_schedule(32, 32) == [1] * 32
    assert linear_round_schedule(32, 16) == [2] * 16
    assert linear_round_schedule(32, 8) == [4] * 8


def test_llada_remainder_first():
    assert linear_schedule(32, 12) == [3] * 8 + [2] * 4
    assert linear_schedule(10, 4) == [3, 3, 2, 2]
    assert linear_schedule(5, 8) == [1] * 5  # more steps than masks: one per step


def test_dream_timestep_schedule():
    # Fast-dLLM's Dream cache mode: 31 masks left after the entry commit, which used step 0.
    # Reference patterns: [0, 1 x 29, 2] for 32 steps (the zero step is dropped) and [2 x 14, 3] for 16.
    assert dream_schedule(31, 32, first_step=1) == [1] * 29 + [2]
    assert dream_schedule(31, 16, first_step=1) == [2] * 14 + [3]
    # plain diffusion_generate: 32 masks, 32 steps; step 0 commits int(32 * 0.0312) = 0 (dropped)
    assert dream_schedule(32, 32)[0] == 1 and dream_schedule(32, 32)[-1] >= 1
    s = dream_schedule(32, 32)
    assert sum(s) == 32 and all(c > 0 for c in s)


@pytest.mark.parametrize("n", [1, 7, 32, 100])
@pytest.mark.parametrize("steps", [1, 3, 7, 32, 200])
@pytest.mark.parametrize("kind", ["linear", "linear_round", "dream"])
def test_schedules_cover_every_mask(n, steps, kind):
    s = block_schedule(n, steps, kind)
    assert sum(s) == n and all(c > 0 for c in s) and len(s) <= steps


def test_fixed_and_split():
    assert fixed_schedule(10, 3) == [3, 3, 3, 1]
    assert split_steps(10, 4) == [3, 3, 2, 2]
    with pytest.raises(UnmaskError, match="fewer than the 4 blocks"):
        split_steps(3, 4)
