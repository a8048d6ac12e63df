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


# --- a learnable sink logit: a place for the softmax's mass ------------------------------------

def test_sink_logit_is_one_more_key_with_a_learned_score_and_a_zero_value():
    from attnlab.lm import SinkLogit
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64) for _ in range(3))
    sink = SinkLogit(3).double()
    with torch.no_grad():
        sink.logit.copy_(torch.tensor([-1.0, 0.5, 2.0]))
    out, w = sink(q, k, v, is_causal=True, return_attention=True)
    scores = (q @ k.transpose(-2, -1) / 2).masked_fill(~torch.ones(5, 5).tril().bool(), -torch.inf)
    e = torch.cat((sink.logit.view(1, 3, 1, 1).expand(2, 3, 5, 1), scores), -1).softmax(-1)
    assert torch.allclose(w, e[..., 1:], atol=1e-12) and torch.allclose(out, e[..., 1:] @ v,
                                                                          atol=1e-12)
    assert (w.sum(-1) < 1).all()  # the rest went to the sink
    assert torch.allclose(sink(q, k, v, is_causal=True), out, atol=1e-12)  # the fused path
    with torch.no_grad():
        sink.logit.fill_(-1e4)  # a sink nobody uses: plain attention
    plain = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(sink(q, k, v, is_causal=True), plain, atol=1e-12)


def test_sink_logit_learns_and_keeps_cached_decoding_exact():
    model = lm("rope", sink_logit=True, num_kv_heads=2)
    assert sum(p.numel() for n, p in model.named_parameters() if n.endswith("logit")) == 2 * 4
    ids = ids_of(T=9)
    logits = model(ids)
    logits.sum().backward()
    assert all(b.attn.attention.logit.grad.abs().sum() > 0 for b in model.blocks)
    caches = model.new_caches()
    step = torch.cat([model(ids[:, i:i + 1], caches=caches) for i in range(9)], 1)
    assert torch.allclose(step, logits, atol=1e-10)
    with pytest.raises(ValueError, match="sink_logit does not go with positions='alibi'"):
        TinyLM(11, positions="alibi", sink_logit=True)
    with pytest.raises(TypeError, match="sink_logit must be True or False"):
        TinyLM(11, sink_logit=1)
