"""The tiny causal language model: causal, cached generation = recomputation, ablation, input."""
import pytest
import torch

from attnlab.lm import POSITIONS, TinyLM


def lm(positions="rope", seed=0, **kw):
    torch.manual_seed(seed)
    return TinyLM(11, 16, 4, 2, positions=positions, max_len=40, **kw).double().eval()


def ids_of(B=2, T=7, seed=1):
    return torch.randint(0, 11, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("positions", POSITIONS)
def test_causal_and_shapes(positions):
    model, ids = lm(positions), ids_of()
    logits, weights = model(ids, return_attention=True)
    assert logits.shape == (2, 7, 11) and len(weights) == 2 and weights[0].shape == (2, 4, 7, 7)
    changed = ids.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 11
    assert torch.allclose(model(changed)[:, :5], logits[:, :5], atol=1e-12)  # the past ignores it


@pytest.mark.parametrize("positions,kv", [(p, None) for p in POSITIONS] + [("rope", 2),
                                                                          ("alibi", 1)])
def test_cached_generation_equals_recomputing_everything(positions, kv):
    model, ids = lm(positions, num_kv_heads=kv), ids_of(T=5)
    fast = model.generate(ids, 8)
    slow = ids
    for _ in range(8):
        slow = torch.cat((slow, model(slow)[:, -1].argmax(-1, keepdim=True)), dim=1)
    assert torch.equal(fast, slow)
    caches = model.new_caches()
    step = torch.cat([model(fast[:, i:i + 1], caches=caches) for i in range(fast.shape[1])], 1)
    assert torch.allclose(step, model(fast), atol=1e-10)


def test_a_window_bounds_the_cache():
    model = lm("rope")
    caches = model.new_caches(window=4, sinks=1)
    for i in range(10):
        model(ids_of(T=1, seed=i), caches=caches)
    assert all(len(c) == 5 and c.seen == 10 for c in caches)
    assert model.generate(ids_of(T=3), 20, window=4, sinks=1).shape == (2, 23)


def test_ablating_every_head_leaves_each_position_on_its_own():
    model = lm("none", mlp=False)
    ids = ids_of()
    off = torch.zeros(2, 4, dtype=torch.float64)
    changed = ids.clone()
    changed[:, 0] = (changed[:, 0] + 1) % 11
    assert torch.allclose(model(ids, head_mask=off)[:, 1:], model(changed, head_mask=off)[:, 1:])
    assert not torch.allclose(model(ids)[:, 1:], model(changed)[:, 1:])


def test_sampling_is_seeded():
    model, ids = lm(), ids_of(T=3)
    a = model.generate(ids, 5, temperature=1.0, generator=torch.Generator().manual_seed(0))
    b = model.generate(ids, 5, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_bad_input_says_what_is_wrong():
    model = lm("learned")
    with pytest.raises(TypeError, match="ids must hold integer ids"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="ids"):
        model(torch.tensor([[0, 11]]))
    with pytest.raises(ValueError, match=r"ids must have shape \(B, T\)"):
        model(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="positions must be one of"):
        TinyLM(11, positions="relative")
    with pytest.raises(ValueError, match=r"head_mask must have shape \(L, h\)"):
        model(ids_of(), head_mask=torch.ones(4))
    with pytest.raises(ValueError, match="beyond them"):
        model(torch.zeros(1, 41, dtype=torch.long))
    with pytest.raises(ValueError, match="caches must be a list of 2 KVCache"):
        model(ids_of(), caches=model.new_caches()[:1])
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        model.generate(ids_of(), 2, temperature=-1.0)
