"""attnlab.channel.GlobalContext: GCNet's block equals timm's (add fusion) and works on video."""
import pytest
import torch

from attnlab.channel import GlobalContext


def test_equals_timm_global_context_with_add_fusion():
    timm_gc = pytest.importorskip("timm.layers.global_context")
    torch.manual_seed(0)
    ours = GlobalContext(16, reduction=4).double()
    ref = timm_gc.GlobalContext(16, fuse_add=True, fuse_scale=False, rd_ratio=1 / 4).double()
    with torch.no_grad():
        torch.nn.init.normal_(ref.mlp_add.fc2.weight)          # timm starts it at zero
        ours.score.weight.copy_(ref.conv_attn.weight.flatten(2))
        ours.score.bias.copy_(ref.conv_attn.bias)
        ours.fc1.weight.copy_(ref.mlp_add.fc1.weight.flatten(1))
        ours.fc1.bias.copy_(ref.mlp_add.fc1.bias)
        ours.norm.weight.copy_(ref.mlp_add.norm.weight), ours.norm.bias.copy_(ref.mlp_add.norm.bias)
        ours.fc2.weight.copy_(ref.mlp_add.fc2.weight.flatten(1))
        ours.fc2.bias.copy_(ref.mlp_add.fc2.bias)
    ours.norm.eps = ref.mlp_add.norm.eps                       # timm's LayerNorm2d: 1e-6
    x = torch.randn(3, 16, 5, 7, dtype=torch.float64)
    assert torch.allclose(ours(x), ref(x), atol=1e-10)


def test_every_position_gets_the_same_vector_on_video_and_weights_sum_to_one():
    torch.manual_seed(0)
    gc = GlobalContext(8, reduction=2)
    x = torch.randn(2, 8, 4, 3, 5)                              # (B, C, T, H, W)
    y, w = gc(x, return_attention=True)
    assert y.shape == x.shape and w.shape == (2, 1, 4, 3, 5)
    assert torch.allclose(w.flatten(1).sum(1), torch.ones(2))
    added = (y - x).flatten(2)
    assert torch.allclose(added, added[..., :1].expand_as(added), atol=1e-6)
    # the same vector does not depend on where the input sits: permuting positions keeps it
    perm = torch.randperm(60)
    y2 = gc(x.flatten(2)[..., perm].view_as(x))
    assert torch.allclose((y2 - x.flatten(2)[..., perm].view_as(x)).flatten(2)[..., 0],
                          added[..., 0], atol=1e-6)


def test_mean_pool_and_bad_input():
    gc = GlobalContext(4, reduction=8, attention_pool=False)     # bottleneck of one unit
    _, w = gc(torch.randn(1, 4, 6), return_attention=True)
    assert torch.allclose(w, torch.full((1, 1, 6), 1 / 6))
    with pytest.raises(ValueError, match="channels"):
        gc(torch.randn(1, 3, 6))
    with pytest.raises(ValueError, match="spatial"):
        gc(torch.randn(1, 4))
