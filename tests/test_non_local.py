"""Tests for attnlab.non_local: identity at init, parity with softmax attention, the four f's."""
import itertools
import math

import pytest
import torch
from torch import nn

from attnlab.non_local import MODES, NonLocalBlock, pairwise_affinity

SHAPES = {1: (2, 6, 9), 2: (2, 6, 5, 7), 3: (2, 6, 3, 5, 5)}  # odd sizes on purpose


def _randomise(block: NonLocalBlock, seed: int = 0) -> NonLocalBlock:
    """Give every parameter (the zero-initialised W_z and BN too) a random value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return block


@pytest.mark.parametrize("mode,dimension,sub_sample,bn_layer",
                         list(itertools.product(MODES, (1, 2, 3), (False, True), (True, False))))
def test_identity_at_init(mode, dimension, sub_sample, bn_layer):
    torch.manual_seed(0)
    block = NonLocalBlock(6, mode=mode, dimension=dimension, sub_sample=sub_sample, bn_layer=bn_layer)
    x = torch.randn(*SHAPES[dimension])
    for train in (True, False):
        block.train(train)
        z, attn = block(x, return_attention=True)
        torch.testing.assert_close(z, x, rtol=0, atol=0)
        torch.testing.assert_close(block(x), x, rtol=0, atol=0)
        n = math.prod(x.shape[2:])
        assert attn.shape[:2] == (2, n)


def test_identity_init_still_learns():
    """gamma = 0 kills the residual branch's output, not the gradient that moves gamma."""
    torch.manual_seed(0)
    block = NonLocalBlock(4)
    block(torch.randn(2, 4, 5, 5)).pow(2).sum().backward()
    assert block.w_z[1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode,dimension,sub_sample",
                         list(itertools.product(MODES, (1, 2, 3), (False, True))))
def test_shapes_finite_and_fused_equals_explicit(mode, dimension, sub_sample):
    torch.manual_seed(1)
    block = _randomise(NonLocalBlock(6, mode=mode, dimension=dimension, sub_sample=sub_sample)).eval()
    x = torch.randn(*SHAPES[dimension])
    z_fast = block(x)                                   # fused SDPA for the Gaussian modes
    z, attn = block(x, return_attention=True)          # explicit (B, N, M) path
    assert z.shape == x.shape and torch.isfinite(z).all() and torch.isfinite(attn).all()
    torch.testing.assert_close(z_fast, z, rtol=1e-5, atol=1e-5)
    spatial = x.shape[2:]
    n = math.prod(spatial)
    if sub_sample:   # ceil_mode: odd sizes round up, nothing is dropped; time is never pooled
        pooled = [math.ceil(s / 2) for s in spatial]
        if dimension == 3:
            pooled[0] = spatial[0]
        m = math.prod(pooled)
    else:
        m = n
    assert attn.shape == (2, n, m)
    if mode in ("gaussian", "embedded_gaussian"):
        torch.testing.assert_close(attn.sum(-1), torch.ones(2, n))


def test_sub_sample_pools_keys_and_values():
    block = NonLocalBlock(4, sub_sample=True)
    _, attn = block(torch.randn(1, 4, 8, 6), return_attention=True)
    assert attn.shape == (1, 48, 12)


def test_embedded_gaussian_is_single_head_softmax_attention():
    """Copy theta, phi, g, W_z into nn.MultiheadAttention(num_heads=1): same output.

    (Subsampling pools *after* the projections phi and g, which MHA cannot express; the
    subsampled block is checked against explicit attention in the next test.)
    """
    sub_sample = False
    torch.manual_seed(2)
    C = 6  # nn.MultiheadAttention projects to its own width, so take rd_channels = C here
    block = _randomise(NonLocalBlock(C, C, mode="embedded_gaussian", sub_sample=sub_sample,
                                     bn_layer=False))
    mha = nn.MultiheadAttention(C, num_heads=1, batch_first=True)
    with torch.no_grad():
        s = math.sqrt(C)  # MHA divides the scores by sqrt(head width); the paper does not
        mha.in_proj_weight.copy_(torch.cat([block.theta.weight.flatten(1) * s,
                                            block.phi.weight.flatten(1), block.g.weight.flatten(1)]))
        mha.in_proj_bias.copy_(torch.cat([block.theta.bias * s, block.phi.bias, block.g.bias]))
        mha.out_proj.weight.copy_(block.w_z.weight.flatten(1))
        mha.out_proj.bias.copy_(block.w_z.bias)
    x = torch.randn(2, C, 5, 7)
    seq = x.flatten(2).transpose(1, 2)         # (B, N, C)
    ref, ref_w = mha(seq, seq, seq, need_weights=True)
    z, attn = block(x, return_attention=True)
    torch.testing.assert_close(attn, ref_w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close((z - x).flatten(2).transpose(1, 2), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sub_sample", [False, True])
def test_embedded_gaussian_matches_sdpa_at_reduced_width(sub_sample):
    """At the default width C/2: theta, phi, g as linear maps, then unscaled softmax attention."""
    torch.manual_seed(3)
    block = _randomise(NonLocalBlock(8, mode="embedded_gaussian", sub_sample=sub_sample)).eval()
    x = torch.randn(2, 8, 5, 5)

    def proj(conv, pool):                                                # (B, N or M, 4)
        h = torch.einsum("bchw,dc->bdhw", x, conv.weight.flatten(1)) + conv.bias[:, None, None]
        if pool:
            h = nn.functional.max_pool2d(h, 2, ceil_mode=True)
        return h.flatten(2).transpose(1, 2)

    q, k, v = proj(block.theta, False), proj(block.phi, sub_sample), proj(block.g, sub_sample)
    assert k.shape[1] == (9 if sub_sample else 25)
    y = torch.softmax(q @ k.transpose(1, 2), -1) @ v                     # (B, N, 4)
    try:  # the book's own SDPA, when the foundation module is there
        from attnlab.functional import scaled_dot_product_attention
        torch.testing.assert_close(scaled_dot_product_attention(q, k, v, scale=1.0), y,
                                   rtol=1e-5, atol=1e-5)
    except ImportError:
        pass
    ref = block.w_z(y.transpose(1, 2).reshape(2, 4, 5, 5)) + x
    torch.testing.assert_close(block(x), ref, rtol=1e-5, atol=1e-5)


def test_matches_timm_non_local_attn():
    """timm's NonLocalAttn is our embedded Gaussian when its scale is off and widths agree."""
    timm_nl = pytest.importorskip("timm.layers.non_local_attn")
    torch.manual_seed(4)
    C, d = 16, 8
    ours = _randomise(NonLocalBlock(C, d, mode="embedded_gaussian"))
    ref = timm_nl.NonLocalAttn(C, use_scale=False, rd_channels=d)
    with torch.no_grad():
        for a, b in ((ref.t, ours.theta), (ref.p, ours.phi), (ref.g, ours.g), (ref.z, ours.w_z[0])):
            a.weight.copy_(b.weight)
            a.bias.copy_(b.bias)
        ref.norm.load_state_dict(ours.w_z[1].state_dict())
    x = torch.randn(2, C, 5, 6)
    for train in (True, False):
        ours.train(train)
        ref.train(train)
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_dot_product_divides_by_key_positions_after_subsampling():
    torch.manual_seed(5)
    block = _randomise(NonLocalBlock(4, 3, mode="dot_product", sub_sample=True))
    x = torch.randn(2, 4, 5, 7)                                # M = 3 * 4 = 12 keys, N = 35
    _, attn = block(x, return_attention=True)
    theta = block.theta(x).flatten(2).transpose(1, 2)
    phi = block.pool(block.phi(x)).flatten(2).transpose(1, 2)
    assert phi.shape[1] == 12
    torch.testing.assert_close(attn, theta @ phi.transpose(1, 2) / 12)


def test_concatenation_is_relu_of_projected_concat():
    torch.manual_seed(6)
    block = _randomise(NonLocalBlock(4, 3, mode="concatenation", sub_sample=True))
    x = torch.randn(2, 4, 4, 6)
    _, attn = block(x, return_attention=True)
    theta = block.theta(x).flatten(2).transpose(1, 2)                   # (B, N, d)
    phi = block.pool(block.phi(x)).flatten(2).transpose(1, 2)           # (B, M, d)
    n, m = theta.shape[1], phi.shape[1]
    cat = torch.cat([theta.unsqueeze(2).expand(-1, -1, m, -1),
                     phi.unsqueeze(1).expand(-1, n, -1, -1)], dim=-1)   # (B, N, M, 2d)
    torch.testing.assert_close(attn, torch.relu(cat @ block.w_f) / m)
    assert (attn >= 0).all()


def test_gaussian_compares_raw_inputs():
    torch.manual_seed(7)
    block = _randomise(NonLocalBlock(3, mode="gaussian", dimension=1))
    x = torch.randn(2, 3, 6)
    _, attn = block(x, return_attention=True)
    seq = x.transpose(1, 2)
    torch.testing.assert_close(attn, torch.softmax(seq @ seq.transpose(1, 2), -1))
    assert not hasattr(block, "theta")


def test_pairwise_affinity_contract():
    q, k = torch.randn(2, 5, 3), torch.randn(2, 4, 3)
    assert pairwise_affinity(q, k).shape == (2, 5, 4)
    with pytest.raises(ValueError, match="mode"):
        pairwise_affinity(q, k, "cosine")
    with pytest.raises(ValueError, match="w_theta"):
        pairwise_affinity(q, k, "concatenation")
    with pytest.raises(ValueError, match="theta"):
        pairwise_affinity(q, torch.randn(2, 4, 2))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="mode"):
        NonLocalBlock(4, mode="softmax")
    with pytest.raises(ValueError, match="dimension"):
        NonLocalBlock(4, dimension=4)
    with pytest.raises(ValueError, match="channels"):
        NonLocalBlock(0)
    with pytest.raises(ValueError, match="rd_channels"):
        NonLocalBlock(4, rd_channels=0)
    with pytest.raises(TypeError, match="rd_channels"):
        NonLocalBlock(4, rd_channels=2.0)
    block = NonLocalBlock(4)
    with pytest.raises(ValueError, match="x must have shape"):
        block(torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match="x must have 4 channels"):
        block(torch.randn(2, 3, 5, 5))
    with pytest.raises(TypeError, match="x must be"):
        block([[1.0]])
    assert NonLocalBlock(5).rd_channels == 2 and NonLocalBlock(1).rd_channels == 1


def test_colour_match_data():
    """The chapter's task (attnlab.data.colour_match): seeded, one mark, a consistent target."""
    from attnlab.data import colour_match
    X, Y = colour_match(64, size=12, seed=3)
    X2, Y2 = colour_match(64, size=12, seed=3)
    assert X.shape == (64, 4, 12, 12) and Y.shape == (64, 1, 12, 12)
    assert torch.equal(X, X2) and torch.equal(Y, Y2)
    assert (X[:, 3].flatten(1).sum(1) == 1).all()                        # exactly one mark
    rgb = X[:, :3]
    mark_colour = (rgb * X[:, 3:]).sum((2, 3), keepdim=True)             # (B, 3, 1, 1)
    assert (mark_colour.sum(1) > 0).all()                                # the mark lies on a square
    same = (rgb.sum(1, keepdim=True) > 0) & (rgb == mark_colour).all(1, keepdim=True)
    assert torch.equal(Y.bool(), same)                                   # target = squares of that colour
    assert ((rgb > 0).flatten(2).sum(-1) % 9 == 0).all()                 # whole 3x3 squares, no overlap
    with pytest.raises(ValueError, match="n_squares"):
        colour_match(2, size=8, n_squares=5)
    with pytest.raises(ValueError, match="n_colours"):
        colour_match(2, n_colours=9)
