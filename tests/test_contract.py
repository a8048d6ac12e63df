"""The contract every mechanism keeps, walked over one table of all of them.

``forward(x)`` returns a tensor of the documented shape; ``forward(x, return_attention=True)``
returns ``(y, attn)`` with the same ``y`` and the documented ``attn``; ``return_attention`` is
keyword-only; the same bad input gets the same exception type, naming the argument, everywhere.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attnlab import checks
from attnlab.attention import MultiHeadAttention, SelfAttention
from attnlab.axial import AxialAttention2d, AxisAttention, ColumnAttention, RowAttention
from attnlab.channel import ChannelGate, EfficientChannelAttention, SqueezeExcite
from attnlab.non_local import MODES, NonLocalBlock
from attnlab.spatial import CBAM, CoordinateAttention, SpatialGate, SpatialTransformer
from attnlab.efficient import SeparableSelfAttention, linear_attention, online_softmax_attention
from attnlab.functional import scaled_dot_product_attention
from attnlab.glimpse import RecurrentAttention
from attnlab.practice import AttentionProposal, C2f, ResidualAttention
from attnlab.rollout import TinyViT
from attnlab.transformer import (AdditiveAttention, DecoderLayer, EncoderDecoder, EncoderLayer,
                                 FeedForward, summary_attention)

B, C, H, W, D, T = 2, 16, 6, 7, 8, 5

# name -> (constructor, input shape, expected attention shape(s))
SEQUENCE = {
    "SelfAttention": (lambda: SelfAttention(D), (B, T, D), (B, T, T)),
    "MultiHeadAttention": (lambda: MultiHeadAttention(D, 2), (B, T, D), (B, 2, T, T)),
    "EncoderLayer": (lambda: EncoderLayer(D, 2), (B, T, D), (B, 2, T, T)),
}
IMAGE = {
    "SqueezeExcite": (lambda: SqueezeExcite(C, 4), (B, C, 1, 1)),
    "EfficientChannelAttention": (lambda: EfficientChannelAttention(C), (B, C, 1, 1)),
    "ChannelGate": (lambda: ChannelGate(C, 4), (B, C, 1, 1)),
    "SpatialGate": (lambda: SpatialGate(), (B, 1, H, W)),
    "CBAM": (lambda: CBAM(C, 4), {"channel": (B, C, 1, 1), "spatial": (B, 1, H, W)}),
    "SpatialTransformer": (lambda: SpatialTransformer(C), (B, 2, 3)),
    "CoordinateAttention": (lambda: CoordinateAttention(C), {"h": (B, C, H, 1), "w": (B, C, 1, W)}),
    "AxisAttention(row)": (lambda: AxisAttention(C, 2, axis="row"), (B, 2, H, W, W)),
    "RowAttention": (lambda: RowAttention(C, 2), (B, 2, H, W, W)),
    "ColumnAttention": (lambda: ColumnAttention(C, 2), (B, 2, W, H, H)),
    "AxialAttention2d": (lambda: AxialAttention2d(C, 2), {"row": (B, 2, H, W, W),
                                                         "column": (B, 2, W, H, H)}),
    **{f"NonLocalBlock({m})": (lambda m=m: NonLocalBlock(C, mode=m), (B, H * W, H * W)) for m in MODES},
    "NonLocalBlock(sub_sample)": (lambda: NonLocalBlock(C, sub_sample=True), (B, H * W, 3 * 4)),
}


def _shapes(attn):
    if isinstance(attn, dict):
        return {k: _shapes(v) for k, v in attn.items()}
    if isinstance(attn, list):
        return [_shapes(a) for a in attn]
    return tuple(attn.shape)


def _contract(module, x, expected):
    module.eval()
    torch.manual_seed(0)
    y = module(x)
    assert isinstance(y, torch.Tensor)
    y2, attn = module(x, return_attention=True)
    torch.testing.assert_close(y2, y, atol=1e-5, rtol=1e-5)
    assert _shapes(attn) == (expected if isinstance(expected, dict) else tuple(expected))
    with pytest.raises(TypeError):
        module(x, True)  # return_attention is keyword-only
    return y


@pytest.mark.parametrize("name", SEQUENCE)
def test_sequence_mechanisms_keep_the_contract(name):
    make, shape, expected = SEQUENCE[name]
    y = _contract(make(), torch.randn(shape), expected)
    assert y.shape[:2] == shape[:2]


@pytest.mark.parametrize("name", IMAGE)
def test_image_mechanisms_keep_the_contract(name):
    make, expected = IMAGE[name]
    y = _contract(make(), torch.randn(B, C, H, W), expected)
    assert y.shape == (B, C, H, W)


@pytest.mark.parametrize("name", IMAGE)
def test_image_mechanisms_refuse_bad_input_the_same_way(name):
    module = IMAGE[name][0]().eval()
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        module([[[[1.0]]]])
    with pytest.raises(TypeError, match="x must be floating point"):
        module(torch.ones(B, C, H, W, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"x must have shape \(B, C, H, W\)"):
        module(torch.randn(C, H, W))
    for empty in ((B, C, 0, W), (B, C, H, 0)):
        with pytest.raises(ValueError, match="at least one position"):
            module(torch.randn(empty))
    if name != "SpatialGate":  # the only one that works for any number of channels
        with pytest.raises(ValueError, match=f"x must have {C} channels"):
            module(torch.randn(B, C + 1, H, W))


@pytest.mark.parametrize("name", IMAGE)
def test_image_mechanisms_keep_an_empty_batch_empty(name):
    module = IMAGE[name][0]().eval()
    y = module(torch.randn(0, C, H, W))
    assert y.shape == (0, C, H, W)


@pytest.mark.parametrize("name", SEQUENCE)
def test_sequence_mechanisms_refuse_bad_input_the_same_way(name):
    make, shape, _ = SEQUENCE[name]
    module = make()
    arg = "query" if name == "MultiHeadAttention" else "x"
    with pytest.raises(TypeError, match=f"{arg} must be a torch.Tensor"):
        module([[[1.0] * D]])
    with pytest.raises(TypeError, match=f"{arg} must be floating point"):
        module(torch.ones(shape, dtype=torch.long))
    with pytest.raises(ValueError, match=f"{arg} must have shape"):
        module(torch.randn(shape[1:]))
    with pytest.raises(ValueError, match="attn_mask"):  # broadcasts beyond (B, [h,] T, T)
        module(torch.randn(shape), attn_mask=torch.ones(3, 1, 1, T, T, dtype=torch.bool))
    assert module(torch.randn(0, T, D)).shape[0] == 0  # empty batch
    assert module(torch.randn(B, 0, D)).shape[1] == 0  # empty sequence


def test_constructors_refuse_bad_counts_the_same_way():
    makers = [lambda v: SelfAttention(v), lambda v: MultiHeadAttention(v, 1),
              lambda v: MultiHeadAttention(8, v), lambda v: SqueezeExcite(v),
              lambda v: EfficientChannelAttention(v), lambda v: ChannelGate(v), lambda v: CBAM(v),
              lambda v: SpatialTransformer(v), lambda v: CoordinateAttention(v),
              lambda v: AxisAttention(v), lambda v: AxialAttention2d(v), lambda v: NonLocalBlock(v),
              lambda v: NonLocalBlock(4, v), lambda v: EncoderLayer(v, 1),
              lambda v: EncoderLayer(8, v), lambda v: DecoderLayer(v, 1),
              lambda v: EncoderDecoder(v, 5), lambda v: EncoderDecoder(5, 5, num_layers=v),
              lambda v: FeedForward(v), lambda v: AdditiveAttention(v),
              lambda v: SeparableSelfAttention(v), lambda v: RecurrentAttention(glimpses=v),
              lambda v: RecurrentAttention(hidden=v), lambda v: ResidualAttention(v),
              lambda v: C2f(v, 4), lambda v: C2f(4, 4, v), lambda v: AttentionProposal(v),
              lambda v: TinyViT(depth=v), lambda v: TinyViT(num_heads=v)]
    for make in makers:
        with pytest.raises(ValueError, match="must be >= 1"):
            make(0)
        with pytest.raises(TypeError, match="must be an int"):
            make(2.5)
        with pytest.raises(TypeError, match="must be an int"):
            make(True)


def test_checks_module_rules():
    assert checks.positive_int(3, "n") == 3
    assert type(checks.positive_int(np.int64(3), "n")) is int  # NumPy integers are whole numbers
    with pytest.raises(ValueError, match="k must be odd"):
        checks.odd(4, "k")
    with pytest.raises(ValueError, match="p must be in"):
        checks.probability(1.0, "p")
    with pytest.raises(ValueError, match="mode must be one of"):
        checks.one_of("x", "mode", ("a", "b"))
    m = torch.ones(3, 4, dtype=torch.bool)
    assert checks.mask_for(m, (2, 3, 4)) is m
    with pytest.raises(ValueError, match="does not broadcast to"):
        checks.mask_for(torch.ones(5, 3, 4, dtype=torch.bool), (2, 3, 4))
    with pytest.raises(TypeError, match="bool"):
        checks.mask_for(torch.ones(3, 4, dtype=torch.int8), (3, 4))


# --- the mechanisms of the later chapters (transformer, efficient, glimpse, practice, rollout) -
# Their inputs differ (a memory, tokens, a fixed canvas), so each names how to make them:
# name -> (constructor, inputs, the name of the first input, expected attention, y's shape)
S2 = T + 2  # a source longer than the target
NEWER = {
    "DecoderLayer": (lambda: DecoderLayer(D, 2), lambda: (torch.randn(B, T, D), torch.randn(B, S2, D)),
                     "x", {"self": (B, 2, T, T), "cross": (B, 2, T, S2)}, (B, T, D)),
    "EncoderDecoder": (lambda: EncoderDecoder(11, 13, D, 2),
                       lambda: (torch.randint(1, 11, (B, S2)), torch.randint(0, 13, (B, T))), "src",
                       {"encoder": [(B, 2, S2, S2)], "self": [(B, 2, T, T)],
                        "cross": [(B, 2, T, S2)]}, (B, T, 13)),
    "SeparableSelfAttention": (lambda: SeparableSelfAttention(D), lambda: (torch.randn(B, T, D),),
                               "x", (B, T), (B, T, D)),
    "RecurrentAttention": (lambda: RecurrentAttention(10, C, glimpses=3, size=4, scales=2, hidden=8),
                           lambda: (torch.rand(B, C, H, W),), "x",
                           {"locations": (B, 3, 2), "logits": (B, 3, 10), "log_prob": (B, 2),
                            "baseline": (B, 2)}, (B, 10)),
    "ResidualAttention": (lambda: ResidualAttention(C), lambda: (torch.randn(B, C, H, 8),), "x",
                          (B, C, H, 8), (B, C, H, 8)),
    "TinyViT": (lambda: TinyViT(canvas=8, patch=4, embed_dim=D, depth=2, num_heads=2, channels=C),
                lambda: (torch.randn(B, C, 8, 8),), "x", [(B, 2, 5, 5)] * 2, (B, 10)),
}


@pytest.mark.parametrize("name", NEWER)
def test_newer_mechanisms_keep_the_contract(name):
    make, inputs, _, expected, y_shape = NEWER[name]
    module = make().eval()
    args = inputs()
    y = module(*args)
    assert isinstance(y, torch.Tensor) and tuple(y.shape) == y_shape
    y2, attn = module(*args, return_attention=True)
    torch.testing.assert_close(y2, y, atol=1e-5, rtol=1e-5)
    assert _shapes(attn) == expected
    with pytest.raises(TypeError):
        module(*args, True)  # return_attention is keyword-only


@pytest.mark.parametrize("name", NEWER)
def test_newer_mechanisms_refuse_bad_input_the_same_way(name):
    make, inputs, arg, _, _ = NEWER[name]
    module = make().eval()
    first, *rest = inputs()
    with pytest.raises(TypeError, match=f"{arg} must be a torch.Tensor"):
        module(first.tolist(), *rest)
    other = first.float() if name == "EncoderDecoder" else first.long()  # tokens are integers
    with pytest.raises(TypeError, match=f"{arg} must (be floating point|hold integer ids)"):
        module(other, *rest)
    with pytest.raises(ValueError, match=f"{arg} must have"):
        module(first[0], *rest)  # the batch dimension left out
    if name == "EncoderDecoder":
        with pytest.raises(ValueError, match=r"src must lie in \[0, 11\)"):
            module(first + 11, *rest)  # ids beyond the vocabulary
    if name == "DecoderLayer":
        with pytest.raises(TypeError, match="memory must be a torch.Tensor"):
            module(first, rest[0].tolist())


@pytest.mark.parametrize("name", NEWER)
def test_newer_mechanisms_keep_an_empty_batch_empty(name):
    make, inputs, _, _, y_shape = NEWER[name]
    y = make().eval()(*(t[:0] for t in inputs()))
    assert tuple(y.shape) == (0, *y_shape[1:])


# --- the attention functions that plug into MultiHeadAttention's seam ------------------------
# Called as the book's kernel; they keep its contract and refuse what it refuses.
SEAMS = {
    "scaled_dot_product_attention": scaled_dot_product_attention,
    "online_softmax_attention": lambda *a, **k: online_softmax_attention(*a, block_size=2, **k),
    "linear_attention(left)": lambda *a, **k: linear_attention(*a, order="left", **k),
    "linear_attention(right)": linear_attention,
    "summary_attention": summary_attention,
    "AdditiveAttention": AdditiveAttention(4),
}


def _qkv():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, 2, T, 4, generator=g), torch.randn(B, 2, T + 1, 4, generator=g),
            torch.randn(B, 2, T + 1, 3, generator=g))


@pytest.mark.parametrize("name", SEAMS)
def test_seams_keep_the_kernels_contract(name):
    fn = SEAMS[name]
    q, k, v = _qkv()
    real = torch.ones(B, 1, 1, T + 1, dtype=torch.bool)
    real[0, ..., -2:] = False  # two padded keys in sample 0
    with torch.no_grad():
        out = fn(q, k, v, real)
        out2, w = fn(q, k, v, real, return_attention=True)
    torch.testing.assert_close(out2, out, atol=1e-5, rtol=1e-5)
    assert out.shape == (B, 2, T, 3) and w.shape == (B, 2, T, T + 1)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, 2, T), atol=1e-5, rtol=0)
    assert torch.all(w[0, ..., -2:] == 0)  # masked keys get weight exactly 0
    with pytest.raises(TypeError):
        fn(q, k, v, None, True)  # return_attention is keyword-only


@pytest.mark.parametrize("name", SEAMS)
def test_seams_refuse_bad_input_as_the_kernel_does(name):
    fn = SEAMS[name]
    q, k, v = _qkv()
    with pytest.raises(TypeError, match="q must be a torch.Tensor"):
        fn(q.tolist(), k, v)
    with pytest.raises(TypeError, match="q must be floating point"):
        fn(q.long(), k, v)
    with pytest.raises(ValueError, match=r"v must have shape \(\.\.\., S, d_v\)"):
        fn(q, k, v[..., :2, :])
    with pytest.raises(TypeError, match="mask must be bool"):
        fn(q, k, v, torch.ones(T, T + 1, dtype=torch.int32))
    with pytest.raises(ValueError, match="mask of shape"):
        fn(q, k, v, torch.ones(3, T, T + 1, dtype=torch.bool))


def test_checks_module_rules_added_for_the_later_chapters():
    assert checks.int_at_least(np.int64(3), "n", 2) == 3
    with pytest.raises(ValueError, match="n must be an int >= 2"):
        checks.int_at_least(1, "n", 2)
    assert checks.non_negative_int(0, "k") == 0
    with pytest.raises(TypeError, match="k must be an int"):
        checks.non_negative_int(0.0, "k")
    with pytest.raises(ValueError, match="t must be a finite number"):
        checks.positive(float("inf"), "t")
    with pytest.raises(ValueError, match="t must be a positive number"):
        checks.positive(0, "t")
    with pytest.raises(TypeError, match="t must be a number"):
        checks.number(True, "t")
    with pytest.raises(ValueError, match="s must be a number >= 0"):
        checks.non_negative(-1e-9, "s")
    with pytest.raises(TypeError, match="f must be a function"):
        checks.function(3, "f")
    y = torch.tensor([0, 2])
    assert checks.ids(y, "y", 3, (2,), "(B,)") is y
    with pytest.raises(ValueError, match=r"y must lie in \[0, 2\)"):
        checks.ids(y, "y", 2)
    with pytest.raises(ValueError, match=r"y must have shape \(B,\) = \(3,\)"):
        checks.ids(y, "y", 3, (3,), "(B,)")
    with pytest.raises(TypeError, match="y must hold integer ids"):
        checks.ids(y.float(), "y", 3)
    with pytest.raises(ValueError, match="x must hold at least one sample"):
        checks.not_empty(torch.zeros(0, 3), "x")
    with pytest.raises(TypeError, match="m must be boolean"):
        checks.bool_mask(torch.zeros(2), "m", (2,))
    assert checks.int_pair([2, np.int64(3)], "grid") == (2, 3)
    with pytest.raises(TypeError, match="grid must be a pair"):
        checks.int_pair(4, "grid")
