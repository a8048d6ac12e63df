"""Tests for attnlab.channel: SE, ECA, CBAM's channel gate (parity with timm, properties, errors)."""
import pytest
import torch

from _weights import copy_by_order

from attnlab.channel import (ChannelGate, EfficientChannelAttention, SqueezeExcite,
                             attach_to_bottlenecks, eca_kernel_size, reduced_channels)


@pytest.fixture
def x():
    return torch.randn(3, 32, 5, 7, generator=torch.Generator().manual_seed(0))


# --- parity with timm ----------------------------------------------------------------------

def test_se_matches_timm(x):
    from timm.layers import SEModule
    torch.manual_seed(1)
    ref = SEModule(32, rd_ratio=1 / 16, rd_divisor=1)      # paper width C/16, not timm's 8-rounding
    ours = SqueezeExcite(32, reduction=16)
    copy_by_order(ref, ours)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("channels", [8, 64, 256])
def test_eca_matches_timm(channels):
    from timm.layers import EcaModule
    torch.manual_seed(2)
    x = torch.randn(2, channels, 4, 4)
    ref = EcaModule(channels)           # for C >= 8 timm's max(k, 3) agrees with the paper's rule
    ours = EfficientChannelAttention(channels)
    assert ours.kernel_size == ref.conv.kernel_size[0]
    copy_by_order(ref, ours)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_channel_gate_matches_timm(x):
    from timm.layers.cbam import ChannelAttn
    torch.manual_seed(3)
    ref = ChannelAttn(32, rd_ratio=1 / 16, rd_divisor=1, mlp_bias=True)
    ours = ChannelGate(32, reduction=16)
    copy_by_order(ref, ours)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


# --- the paper's numbers ---------------------------------------------------------------------

def test_eca_kernel_size_rule():
    assert [eca_kernel_size(c) for c in (4, 16, 64, 256, 512, 1024, 2048)] == [1, 3, 3, 5, 5, 5, 7]
    assert eca_kernel_size(64, gamma=1, b=0) == 7


def test_reduced_channels():
    assert reduced_channels(256, 16) == 16
    assert reduced_channels(8, 16) == 1                   # never zero
    assert reduced_channels(36, 16, divisor=8) == 8       # timm's default rounding
    assert reduced_channels(64, 16, rd_channels=5) == 5


def test_senet50_parameter_count():
    from torchvision.models import resnet50
    plain = resnet50(weights=None)
    assert sum(p.numel() for p in plain.parameters()) == 25_557_032
    se = resnet50(weights=None)
    assert attach_to_bottlenecks(se, lambda c: SqueezeExcite(c)) == 16
    assert sum(p.numel() for p in se.parameters()) == 28_088_024      # SENet paper, Table 1
    se.eval()
    assert se(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


# --- properties and the return_attention contract --------------------------------------------

@pytest.mark.parametrize("make", [lambda: SqueezeExcite(32), lambda: EfficientChannelAttention(32),
                                  lambda: ChannelGate(32)])
def test_gate_contract(make, x):
    m = make()
    y, a = m(x, return_attention=True)
    assert y.shape == x.shape and a.shape == (3, 32, 1, 1)
    assert torch.all((a > 0) & (a < 1))
    torch.testing.assert_close(y, x * a)
    torch.testing.assert_close(m(x), y)


def test_eca_is_local_and_tiny():
    m = EfficientChannelAttention(kernel_size=3)
    assert sum(p.numel() for p in m.parameters()) == 3
    x = torch.zeros(1, 10, 2, 2)
    x[0, 5] = 1.0
    with torch.no_grad():
        m.conv.weight.fill_(1.0)
    _, a = m(x, return_attention=True)
    moved = (a.flatten() - 0.5).abs() > 1e-6      # only channels 4, 5, 6 see channel 5
    assert moved.nonzero().flatten().tolist() == [4, 5, 6]


def test_gate_is_per_sample():
    torch.manual_seed(0)
    m = SqueezeExcite(16, reduction=4)
    x = torch.randn(2, 16, 3, 3)
    _, a_pair = m(x, return_attention=True)
    _, a_one = m(x[1:], return_attention=True)
    torch.testing.assert_close(a_pair[1:], a_one)


def test_channel_gate_uses_max_pool():
    torch.manual_seed(0)
    m = ChannelGate(8, reduction=2)
    x = torch.zeros(1, 8, 4, 4)
    spike = x.clone()
    spike[0, :, 0, 0] = 16.0                      # same mean as 1.0 everywhere, larger max
    flat = torch.ones(1, 8, 4, 4)
    _, a1 = m(spike, return_attention=True)
    _, a2 = m(flat, return_attention=True)
    assert not torch.allclose(a1, a2)
    se = SqueezeExcite(8, reduction=2)
    torch.testing.assert_close(se(spike, return_attention=True)[1], se(flat, return_attention=True)[1])


# --- clear errors --------------------------------------------------------------------------

def test_errors():
    with pytest.raises(ValueError, match="channels"):
        SqueezeExcite(16)(torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        SqueezeExcite(16)(torch.randn(16, 4, 4))
    with pytest.raises(ValueError, match="channels"):
        SqueezeExcite(0)
    with pytest.raises(TypeError, match="channels"):
        ChannelGate(16.0)
    with pytest.raises(ValueError, match="reduction"):
        SqueezeExcite(16, reduction=0)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        EfficientChannelAttention(16, kernel_size=4)
    with pytest.raises(ValueError, match="channels"):
        EfficientChannelAttention()
    with pytest.raises(ValueError, match="channels"):
        EfficientChannelAttention(16)(torch.randn(2, 15, 3, 3))
