"""Tests for attnlab.spatial: CBAM, spatial transformer, coordinate attention."""
import pytest
import torch
from torch import nn

from _weights import copy_by_order

from attnlab.channel import SqueezeExcite, attach_to_bottlenecks
from attnlab.spatial import (CBAM, CoordinateAttention, SoftArgmax2d, SpatialGate,
                              SpatialTransformer, affine_warp)


def randomise_norms(module: nn.Module, seed: int = 0) -> None:
    """Give every batch norm non-trivial affine parameters and running statistics."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(1 + torch.rand(m.running_var.shape, generator=g))


@pytest.fixture
def x():
    return torch.randn(3, 32, 9, 11, generator=torch.Generator().manual_seed(0))


# --- parity with timm ----------------------------------------------------------------------

@pytest.mark.parametrize("train", [False, True])
def test_cbam_matches_timm(x, train):
    from timm.layers.cbam import CbamModule
    torch.manual_seed(1)
    # timm's spatial gate is conv (no bias) + batch norm, as in the authors' code
    ref = CbamModule(32, rd_ratio=1 / 16, rd_divisor=1, mlp_bias=True)
    ours = CBAM(32, reduction=16, kernel_size=7, norm_layer=nn.BatchNorm2d)
    randomise_norms(ref)
    copy_by_order(ref, ours)
    ref.train(train), ours.train(train)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("train", [False, True])
def test_coordinate_attention_matches_timm(x, train):
    from timm.layers.coord_attn import CoordAttn
    torch.manual_seed(2)
    ours = CoordinateAttention(32)                      # max(8, 32 // 32) = 8 hidden channels
    ref = CoordAttn(32, rd_channels=8, bias=True)       # BN + h-swish as in the paper's code
    assert ours.conv1.out_channels == 8
    randomise_norms(ref)
    copy_by_order(ref, ours)
    ref.train(train), ours.train(train)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_coordinate_attention_width_rule():
    assert CoordinateAttention(512).conv1.out_channels == 16
    assert CoordinateAttention(64).conv1.out_channels == 8
    assert CoordinateAttention(64, reduction=4).conv1.out_channels == 16


# --- the return_attention contract and properties ---------------------------------------------

def test_spatial_gate_contract(x):
    y, a = SpatialGate()(x, return_attention=True)
    assert y.shape == x.shape and a.shape == (3, 1, 9, 11)
    assert torch.all((a > 0) & (a < 1))
    torch.testing.assert_close(y, x * a)


def test_spatial_gate_channel_permutation_invariant(x):
    torch.manual_seed(0)
    m = SpatialGate(kernel_size=3)
    perm = torch.randperm(32)
    _, a = m(x, return_attention=True)
    _, a_perm = m(x[:, perm], return_attention=True)
    torch.testing.assert_close(a, a_perm)


def test_cbam_contract(x):
    m = CBAM(32)
    y, att = m(x, return_attention=True)
    assert set(att) == {"channel", "spatial"}
    assert att["channel"].shape == (3, 32, 1, 1) and att["spatial"].shape == (3, 1, 9, 11)
    torch.testing.assert_close(y, x * att["channel"] * att["spatial"])
    torch.testing.assert_close(m(x), y)


def test_coordinate_attention_contract(x):
    m = CoordinateAttention(32).eval()
    y, att = m(x, return_attention=True)
    assert att["h"].shape == (3, 32, 9, 1) and att["w"].shape == (3, 32, 1, 11)
    torch.testing.assert_close(y, x * att["h"] * att["w"])


def test_coordinate_attention_keeps_position():
    """Unlike SE, moving a blob changes the gate: the strips remember where it was."""
    torch.manual_seed(0)
    m = CoordinateAttention(16, norm_layer=None)
    a = torch.zeros(1, 16, 8, 8)
    a[..., 1, 1] = 1.0
    b = torch.zeros(1, 16, 8, 8)
    b[..., 6, 5] = 1.0
    _, ga = m(a, return_attention=True)
    _, gb = m(b, return_attention=True)
    assert not torch.allclose(ga["h"], gb["h"]) and not torch.allclose(ga["w"], gb["w"])
    se = SqueezeExcite(16, 4)                             # SE's squeeze forgets where: same gate
    torch.testing.assert_close(se(a, return_attention=True)[1], se(b, return_attention=True)[1])


# --- spatial transformer --------------------------------------------------------------------

@pytest.mark.parametrize("transform", ["affine", "attention"])
def test_stn_is_identity_at_init(transform):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 12, 10)
    y, theta = SpatialTransformer(3, transform=transform)(x, return_attention=True)
    torch.testing.assert_close(theta, torch.tensor([[1.0, 0, 0], [0, 1, 0]]).expand(2, 2, 3))
    torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-5)


def test_warp_translation_moves_pixels():
    x = torch.randn(1, 2, 8, 10)
    p, q = 3, 2                                           # 3 px left, 2 px up
    theta = torch.tensor([[[1.0, 0, 2 * p / 10], [0, 1, 2 * q / 8]]])
    y = affine_warp(x, theta)
    torch.testing.assert_close(y[..., : 8 - q, : 10 - p], x[..., q:, p:], atol=1e-5, rtol=1e-5)
    assert y[..., 8 - q:, :].abs().max() == 0 and y[..., :, 10 - p:].abs().max() == 0


def test_warp_zoom_crops_centre():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    theta = torch.tensor([[[0.5, 0, 0], [0, 0.5, 0]]])   # the central half, at half the size
    torch.testing.assert_close(affine_warp(x, theta, out_size=(2, 2)), x[..., 1:3, 1:3])


def test_stn_out_size_and_gradients():
    torch.manual_seed(0)
    m = SpatialTransformer(1, out_size=(6, 6), transform="attention")
    x = torch.randn(4, 1, 20, 20)
    y, theta = m(x, return_attention=True)
    assert y.shape == (4, 1, 6, 6) and theta.shape == (4, 2, 3)
    y.square().mean().backward()
    assert m.fc_theta.bias.grad.abs().sum() > 0            # the sampler is differentiable


# --- parameter overheads in ResNet-50 ---------------------------------------------------------

def test_cbam_in_resnet50():
    from torchvision.models import resnet50
    model = resnet50(weights=None)
    assert attach_to_bottlenecks(model, lambda c: CBAM(c)) == 16
    # SE's 2,530,992 for the two MLPs plus a 7x7x2 conv with bias per block
    assert sum(p.numel() for p in model.parameters()) == 25_557_032 + 2_530_992 + 16 * 99


# --- clear errors --------------------------------------------------------------------------

def test_errors():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        SpatialGate(6)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        SpatialGate()(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        CBAM(16)(torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match="channels"):
        CoordinateAttention(16)(torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match="transform"):
        SpatialTransformer(1, transform="projective")
    with pytest.raises(ValueError, match="loc_features"):
        SpatialTransformer(1, localization=nn.Flatten())
    with pytest.raises(ValueError, match="channels"):
        SpatialTransformer(3)(torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="theta"):
        affine_warp(torch.randn(2, 1, 4, 4), torch.randn(1, 2, 3))
    with pytest.raises(ValueError, match="out_size"):
        SpatialTransformer(1, out_size=(4,))


def test_soft_argmax_finds_the_peak():
    s = torch.full((2, 1, 5, 8), -30.0)
    s[0, 0, 1, 6] = 30.0
    s[1, 0, 4, 0] = 30.0
    out = SoftArgmax2d()(s)
    expected = torch.tensor([[(2 * 6 + 1) / 8 - 1, (2 * 1 + 1) / 5 - 1], [1 / 8 - 1, 9 / 5 - 1]])
    torch.testing.assert_close(out[:, :2], expected, atol=1e-4, rtol=0)
    assert out[:, 2:].max() < 1e-2                       # all the weight on one pixel: no spread
    flat = SoftArgmax2d()(torch.zeros(1, 1, 4, 4))
    torch.testing.assert_close(flat[0, :2], torch.zeros(2), atol=1e-6, rtol=0)


def test_stn_with_soft_argmax_localisation_starts_at_identity():
    loc = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), SoftArgmax2d())
    m = SpatialTransformer(1, transform="attention", localization=loc, loc_features=4)
    x = torch.randn(2, 1, 10, 10)
    torch.testing.assert_close(m(x), x, atol=1e-5, rtol=1e-5)


# --- the chapters' data ----------------------------------------------------------------------

def test_cluttered_digits():
    from attnlab.data import cluttered_digits, load_digit_images
    x, y, box = cluttered_digits(16, canvas=20, clutter=0, seed=1)
    assert x.shape == (16, 1, 20, 20) and y.shape == (16,) and box.shape == (16, 2)
    images, labels = load_digit_images()
    for k in range(16):                                   # with no clutter the digit is all there is
        r, c = box[k].tolist()
        crop = x[k, 0, r:r + 8, c:c + 8]
        assert x[k].sum() == pytest.approx(crop.sum().item())
        assert any(torch.equal(crop, images[i]) for i in torch.nonzero(labels == y[k]).flatten())
    a, b = cluttered_digits(8, seed=3)[0], cluttered_digits(8, seed=3)[0]
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="canvas"):
        cluttered_digits(4, canvas=6)


def test_noisy_channel_digits():
    from attnlab.data import noisy_channel_digits
    x, y, signal = noisy_channel_digits(4000, channels=4, seed=0)
    assert x.shape == (4000, 4, 8, 8) and y.max() <= 9
    # the clean channel really is the least noisy one, judged from the whole channel
    rough = (x[..., 1:, :] - x[..., :-1, :]).square().mean((2, 3))       # (n, K)
    assert (rough.argmin(1) == signal).float().mean() > 0.99
    assert torch.bincount(signal, minlength=4).min() > 900                # uniform over channels
    with pytest.raises(ValueError, match="split"):
        noisy_channel_digits(4, split="val")


# --- bad input found by trying it --------------------------------------------------------------

def test_spatial_transformer_default_localisation_works_on_tiny_inputs_and_empty_batches():
    stn = SpatialTransformer(1).eval()
    for size in (1, 2, 3, 5):
        x = torch.randn(2, 1, size, size)
        y, theta = stn(x, return_attention=True)
        assert y.shape == x.shape and theta.shape == (2, 2, 3)
    y, theta = stn(torch.randn(0, 1, 8, 8), return_attention=True)
    assert y.shape == (0, 1, 8, 8) and theta.shape == (0, 2, 3)


def test_out_size_must_be_whole_pixels():
    with pytest.raises(TypeError, match=r"out_size\[0\] must be an int"):
        SpatialTransformer(1, out_size=(2.7, 3))
    with pytest.raises(ValueError, match="out_size must be a pair"):
        SpatialTransformer(1, out_size=5)
    with pytest.raises(TypeError, match=r"out_size\[1\]"):
        affine_warp(torch.randn(1, 1, 4, 4), torch.eye(2, 3)[None], out_size=(4, 3.5))


def test_affine_warp_takes_theta_of_another_float_dtype_and_refuses_lists():
    x = torch.randn(2, 1, 5, 5)
    theta = torch.eye(2, 3, dtype=torch.float64).expand(2, 2, 3)
    torch.testing.assert_close(affine_warp(x, theta), x, atol=1e-5, rtol=0)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        affine_warp(x.tolist(), theta)
    with pytest.raises(TypeError, match="theta must be a torch.Tensor"):
        affine_warp(x, theta.tolist())
