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
from attnlab.transformer import EncoderLayer

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
        return {k: tuple(v.shape) for k, v in attn.items()}
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
              lambda v: EncoderLayer(8, v)]
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
