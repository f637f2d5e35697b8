"""KV cache semantics: the refresh forward is exact, and a cached step right after a refresh sees
the same numbers as a full forward (nothing changed yet), with left padding."""

import pytest
import torch

MASK = 1


def canvas(model):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(3, 40, (3, 20), generator=g)
    x[:, 12:] = MASK
    am = torch.ones_like(x)
    am[0, :4] = 0  # left padding on two rows
    am[2, :7] = 0
    x[am == 0] = 0
    return x, am


def test_refresh_equals_no_cache(tiny_model):
    x, am = canvas(tiny_model)
    full = tiny_model.predict(x, am).logits
    out = tiny_model.predict(x, am, return_cache=True)
    assert (out.logits - full).abs().max() <= 1e-5
    assert out.cache.length == x.shape[1] and out.cache.batch_size == 3


@pytest.mark.parametrize("start,end", [(12, 16), (12, 20), (16, 20)])
def test_prefix_and_dual_windows_match_full_forward_after_refresh(tiny_model, start, end):
    x, am = canvas(tiny_model)
    full = tiny_model.predict(x, am).logits
    cache = tiny_model.predict(x, am, return_cache=True).cache
    prefix = tiny_model.predict(x, am, cache=cache, start=start).logits  # block + suffix
    assert (prefix - full[:, start:]).abs().max() <= 1e-5
    dual = tiny_model.predict(x, am, cache=cache, start=start, end=end).logits  # block only
    assert (dual - full[:, start:end]).abs().max() <= 1e-5


def test_cached_step_sees_new_block_tokens(tiny_model):
    """After committing tokens in the block, dual/prefix windows recompute the block (their
    logits change) while the cache itself stays as it was."""
    x, am = canvas(tiny_model)
    cache = tiny_model.predict(x, am, return_cache=True).cache
    digest = cache.checksum()
    before = tiny_model.predict(x, am, cache=cache, start=12, end=16).logits
    x2 = x.clone()
    x2[:, 13] = 5
    after = tiny_model.predict(x2, am, cache=cache, start=12, end=16).logits
    exact = tiny_model.predict(x2, am).logits[:, 12:16]
    assert (after - before).abs().max() > 1e-4
    # the block itself is fresh; only the stale suffix keys differ from the exact forward
    assert (after - exact).abs().max() < (before - exact).abs().max() + 1.0
    assert cache.checksum() == digest


def test_rows_of_a_cache_can_be_selected_and_repeated(tiny_llada):
    x, am = canvas(tiny_llada)
    cache = tiny_llada.predict(x, am, return_cache=True).cache
    sub = cache.select_rows(torch.tensor([2, 0]))
    a = tiny_llada.predict(x[[2, 0]], am[[2, 0]], cache=sub, start=12, end=16).logits
    b = tiny_llada.predict(x, am, cache=cache, start=12, end=16).logits[[2, 0]]
    assert (a - b).abs().max() <= 1e-6
    rep = cache.repeat_rows(2)
    assert rep.batch_size == 6 and torch.equal(rep.keys[0][0], rep.keys[0][1])


def _concatenated(cache, layer, start, k_new, v_new):
    """The reference rule: stored prefix ++ window ++ stored suffix."""
    k_old, v_old = cache.keys[layer], cache.values[layer]
    end = start + k_new.shape[2]
    return (torch.cat([k_old[:, :, :start], k_new, k_old[:, :, end:]], dim=2),
            torch.cat([v_old[:, :, :start], v_new, v_old[:, :, end:]], dim=2))


def test_window_written_in_place_equals_the_concatenation_and_leaves_the_cache_alone():
    """Windows that move (dual block, then a wider prefix window, then one that starts earlier, as
    Dream's shifted row does) give exactly the concatenated keys, while the stored cache keeps
    its bytes: positions an earlier window wrote are restored from it."""
    from unmask.models.cache import KVCache

    g = torch.Generator().manual_seed(0)
    keys = [torch.randn(2, 2, 20, 4, generator=g) for _ in range(2)]
    values = [torch.randn(2, 2, 20, 4, generator=g) for _ in range(2)]
    cache = KVCache(keys, values)
    digest = cache.checksum()
    for start, q in [(12, 4), (12, 4), (12, 8), (11, 5), (16, 4), (0, 20)]:
        for layer in range(2):
            k_new = torch.randn(2, 2, q, 4, generator=g)
            v_new = torch.randn(2, 2, q, 4, generator=g)
            k, v = cache.layer_window(layer, start, k_new, v_new)
            ref_k, ref_v = _concatenated(cache, layer, start, k_new, v_new)
            assert torch.equal(k, ref_k) and torch.equal(v, ref_v)
    assert cache.checksum() == digest


def test_a_dual_cache_step_copies_only_its_window(tiny_llada):
    """After the first windowed forward (which sets up the scratch), a step copies the window's
    keys and values and nothing else: the bytes no longer grow with the canvas."""
    from unmask.models import cache as cache_mod

    x, am = canvas(tiny_llada)
    cache = tiny_llada.predict(x, am, return_cache=True).cache
    first = tiny_llada.predict(x, am, cache=cache, start=12, end=16).logits
    before = cache_mod.COPY_STATS["bytes"]
    again = tiny_llada.predict(x, am, cache=cache, start=12, end=16).logits
    copied = cache_mod.COPY_STATS["bytes"] - before
    window = sum(2 * k[:, :, 12:16].numel() * k.element_size() for k in cache.keys)
    assert copied == window
    assert copied * 5 == sum(2 * k.numel() * k.element_size() for k in cache.keys)  # 4 of 20 positions
    assert torch.equal(first, again)
