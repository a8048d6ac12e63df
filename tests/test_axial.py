"""Tests for attnlab.axial: row/column attention equal masked full attention; axial composite."""
import pytest
import torch
from torch import nn

from attnlab.attention import copy_torch_mha_
from attnlab.axial import (AxialAttention2d, AxisAttention, ColumnAttention, RowAttention,
                           attention_cost, axis_mask)


def reference_mha(ours: AxisAttention) -> nn.MultiheadAttention:
    """torch's multi-head attention; ours gets a copy of its weights."""
    ref = nn.MultiheadAttention(ours.channels, ours.num_heads, batch_first=True)
    copy_torch_mha_(ours, ref)
    return ref


@pytest.fixture
def x():
    return torch.randn(2, 8, 3, 5, generator=torch.Generator().manual_seed(0))  # B, C, H, W (H != W)


@pytest.mark.parametrize("axis", ["row", "column"])
@pytest.mark.parametrize("num_heads", [1, 2])
def test_axis_attention_is_full_attention_with_a_same_axis_mask(x, axis, num_heads):
    torch.manual_seed(1)
    B, C, H, W = x.shape
    ours = AxisAttention(C, num_heads, axis=axis)
    ref = reference_mha(ours)
    seq = x.flatten(2).transpose(1, 2)  # (B, N, C), position n = i * W + j
    mask = axis_mask(H, W, axis)  # (N, N) True = same row/column
    # torch's boolean attn_mask means True = blocked: pass the complement
    ref_out, ref_w = ref(seq, seq, seq, attn_mask=~mask, need_weights=True, average_attn_weights=False)
    out, w = ours(x, return_attention=True)
    torch.testing.assert_close(out.flatten(2).transpose(1, 2), ref_out, rtol=1e-5, atol=1e-5)
    # the per-line maps are the diagonal blocks of the full (N, N) map
    full = ref_w.view(B, num_heads, H, W, H, W)  # (B, h, i, j, i', j')
    if axis == "row":
        assert w.shape == (B, num_heads, H, W, W)
        expected = torch.stack([full[:, :, i, :, i, :] for i in range(H)], dim=2)
    else:
        assert w.shape == (B, num_heads, W, H, H)
        expected = torch.stack([full[:, :, :, j, :, j] for j in range(W)], dim=2)
    torch.testing.assert_close(w, expected, rtol=1e-5, atol=1e-6)
    # the full map puts no weight outside the row/column
    assert float(ref_w.detach().masked_select(~mask.expand_as(ref_w)).abs().max()) == 0.0


def test_row_and_column_classes_and_fused_equals_explicit(x):
    torch.manual_seed(2)
    for cls, axis in ((RowAttention, "row"), (ColumnAttention, "column")):
        m = cls(8, 4)
        assert m.axis == axis
        y_fused = m(x)
        y_explicit, w = m(x, return_attention=True)
        torch.testing.assert_close(y_fused, y_explicit, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))


def test_column_attention_is_row_attention_of_the_transposed_image(x):
    torch.manual_seed(3)
    col = ColumnAttention(8, 2)
    row = RowAttention(8, 2)
    row.load_state_dict(col.state_dict())
    torch.testing.assert_close(col(x), row(x.transpose(2, 3)).transpose(2, 3), rtol=1e-5, atol=1e-6)


def test_axial_composite_returns_both_maps_and_reaches_every_pixel(x):
    torch.manual_seed(4)
    m = AxialAttention2d(8, num_heads=2)
    z, attn = m(x, return_attention=True)
    assert z.shape == x.shape
    assert set(attn) == {"row", "column"}
    assert attn["row"].shape == (2, 2, 3, 5, 5) and attn["column"].shape == (2, 2, 5, 3, 3)
    torch.testing.assert_close(m(x), z, rtol=1e-5, atol=1e-6)
    # receptive field: the output at (0, 0) depends on every pixel after row + column ...
    xg = x.clone().requires_grad_(True)
    m(xg)[0, :, 0, 0].sum().backward()
    assert bool((xg.grad[0].abs().sum(0) > 0).all())
    # ... but one row step alone reaches only row 0
    xg.grad = None
    m.row(xg)[0, :, 0, 0].sum().backward()
    reach = xg.grad[0].abs().sum(0) > 0  # (H, W)
    assert bool(reach[0].all()) and not bool(reach[1:].any())
    assert not bool(xg.grad[1].any())  # samples stay separate


def test_residual_and_row_then_column_order(x):
    torch.manual_seed(5)
    m = AxialAttention2d(8, num_heads=2, residual=True)
    y = x + m.row(x)
    torch.testing.assert_close(m(x), y + m.column(y), rtol=1e-5, atol=1e-6)
    m.residual = False
    torch.testing.assert_close(m(x), m.column(m.row(x)), rtol=1e-5, atol=1e-6)


def test_axis_mask_and_cost():
    mask = axis_mask(2, 3, "row")
    assert mask.shape == (6, 6) and mask.dtype == torch.bool
    assert mask.sum().item() == 6 * 3
    assert axis_mask(2, 3, "column").sum().item() == 6 * 2
    assert attention_cost(4, 4, "full") == 256 and attention_cost(4, 4, "axial") == 16 * 8
    with pytest.raises(ValueError, match="kind"):
        attention_cost(4, 4, "diagonal")
    with pytest.raises(ValueError, match="axis"):
        axis_mask(2, 2, "diagonal")


def test_bad_input_messages():
    with pytest.raises(ValueError, match="divisible"):
        AxisAttention(6, 4)
    with pytest.raises(ValueError, match="axis"):
        AxisAttention(8, 2, axis="depth")
    with pytest.raises(ValueError, match="channels"):
        AxisAttention(0)
    m = AxialAttention2d(8, 2)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        m(torch.randn(2, 8, 5))
    with pytest.raises(ValueError, match="8 channels"):
        m(torch.randn(2, 4, 5, 5))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        m([[1.0]])


def test_attention_cost_refuses_negative_and_fractional_sizes():
    with pytest.raises(ValueError, match="H must be >= 1"):
        attention_cost(-2, 3)
    with pytest.raises(TypeError, match="H must be an int"):
        attention_cost(2.5, 3)
    with pytest.raises(ValueError, match="kind must be one of"):
        attention_cost(2, 3, "diagonal")
