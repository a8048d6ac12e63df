"""Tests for attnlab.rollout: rollout's algebra, the [CLS] map, the box share, the tiny ViT."""
import pytest
import torch

from attnlab.rollout import TinyViT, attention_rollout, box_share, cls_map

B, H, N = 2, 3, 5


def _softmax_weights(layers=3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, N, N, generator=g, dtype=dtype).softmax(-1) for _ in range(layers)]


@pytest.mark.parametrize("residual", [True, False])
def test_rollout_of_identity_attention_is_identity(residual):
    eye = torch.eye(N).expand(B, H, N, N)
    torch.testing.assert_close(attention_rollout([eye] * 3, residual=residual),
                               torch.eye(N).expand(B, N, N))


@pytest.mark.parametrize("head_fusion", ["mean", "max"])
def test_rollout_rows_sum_to_one(head_fusion):
    rolled = attention_rollout(_softmax_weights(), head_fusion=head_fusion)
    assert rolled.shape == (B, N, N) and torch.all(rolled >= 0)
    torch.testing.assert_close(rolled.sum(-1), torch.ones(B, N))


def test_one_layer_without_residual_is_the_head_mean():
    (w,) = _softmax_weights(1)
    torch.testing.assert_close(attention_rollout([w], residual=False), w.mean(1))
    torch.testing.assert_close(attention_rollout([w], head_fusion="max", residual=False), w.amax(1))


def test_rollout_is_the_product_of_half_attention_plus_half_identity():
    ws = _softmax_weights(3, dtype=torch.float64)
    hat = [0.5 * w.mean(1) + 0.5 * torch.eye(N, dtype=torch.float64) for w in ws]
    torch.testing.assert_close(attention_rollout(ws), hat[2] @ hat[1] @ hat[0])


def test_two_layer_example_by_hand():
    # layer 1: both tokens read token 1; layer 2: both tokens read token 0
    a1 = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    a2 = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).view(1, 1, 2, 2)
    # hat A1 = [[.5, .5], [0, 1]], hat A2 = [[1, 0], [.5, .5]]; rollout = hat A2 @ hat A1
    expected = torch.tensor([[[0.5, 0.5], [0.25, 0.75]]])
    torch.testing.assert_close(attention_rollout([a1, a2]), expected)
    assert not torch.allclose(attention_rollout([a2, a1]), expected)  # the order matters
    torch.testing.assert_close(attention_rollout([a1, a2], residual=False),
                               torch.tensor([[[0.0, 1.0], [0.0, 1.0]]]))


def test_rollout_refuses_bad_input():
    w = _softmax_weights(1)[0]
    with pytest.raises(TypeError, match="attentions"):
        attention_rollout(w)  # a tensor, not a list of tensors
    with pytest.raises(TypeError, match="attentions"):
        attention_rollout([])
    with pytest.raises(TypeError, match=r"attentions\[1\] must be floating point"):
        attention_rollout([w, torch.ones(B, H, N, N, dtype=torch.long)])
    with pytest.raises(ValueError, match=r"attentions\[0\] must have shape \(B, h, N, N\)"):
        attention_rollout([w.mean(1)])
    with pytest.raises(ValueError, match=r"attentions\[0\]"):
        attention_rollout([w[..., :-1]])  # not square
    with pytest.raises(ValueError, match=r"attentions\[1\]"):
        attention_rollout([w, w[:, :, :-1, :-1]])  # another N
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout([w], head_fusion="sum")
    with pytest.raises(TypeError):
        attention_rollout([w], "mean")  # keyword-only


def test_cls_map_takes_row_zero_over_the_patches_row_major():
    m = torch.zeros(B, H, 7, 7)
    m[..., 0, 1:] = torch.arange(6.0)
    m[..., 1:, :] = -1.0  # other rows must not leak in
    out = cls_map(m, (2, 3))
    assert out.shape == (B, H, 2, 3)
    torch.testing.assert_close(out, torch.arange(6.0).view(2, 3).expand(B, H, 2, 3))
    with pytest.raises(ValueError, match="N = 1 \\+ 2\\*2"):
        cls_map(m, (2, 2))
    with pytest.raises(TypeError, match="matrix must be a torch.Tensor"):
        cls_map(m.tolist(), (2, 3))


def test_box_share():
    box = torch.tensor([[4, 4], [2, 2]])  # 8x8 boxes on a 12x12 canvas of 3x3 patches of 4x4
    uniform = torch.ones(2, 3, 3)
    torch.testing.assert_close(box_share(uniform, box, 4), torch.full((2,), 64 / 144))
    centre = torch.zeros(2, 3, 3)
    centre[:, 1, 1] = 1.0
    # the centre patch (pixels 4..7) lies inside both boxes (pixels 4..11 and 2..9)
    torch.testing.assert_close(box_share(centre, box, 4), torch.tensor([1.0, 1.0]))
    corner = torch.zeros(2, 3, 3)
    corner[:, 0, 0] = 1.0  # pixels 0..3: box 0 misses it, box 1 covers 2 x 2 of its 4 x 4
    torch.testing.assert_close(box_share(corner, box, 4), torch.tensor([0.0, 0.25]))
    heads = torch.stack([uniform, corner], 1)  # (B, 2, 3, 3): extra dimensions broadcast
    torch.testing.assert_close(box_share(heads, box, 4),
                               torch.tensor([[64 / 144, 0.0], [64 / 144, 0.25]]))
    with pytest.raises(ValueError, match="box"):
        box_share(uniform, box[:1], 4)
    with pytest.raises(TypeError, match="box"):
        box_share(uniform, [[4, 4], [2, 2]], 4)
    with pytest.raises(ValueError, match="patch"):
        box_share(uniform, box, 0)


def test_tiny_vit_shapes_and_the_return_attention_contract():
    torch.manual_seed(0)
    model = TinyViT(canvas=12, patch=4, embed_dim=16, depth=3, num_heads=2).eval()
    x = torch.rand(B, 1, 12, 12)
    logits = model(x)
    assert logits.shape == (B, 10) and model.grid == (3, 3)
    logits2, weights = model(x, return_attention=True)
    torch.testing.assert_close(logits2, logits, atol=1e-5, rtol=1e-5)  # fused vs explicit path
    assert len(weights) == 3 and all(w.shape == (B, 2, 10, 10) for w in weights)
    torch.testing.assert_close(weights[0].sum(-1), torch.ones(B, 2, 10))
    rolled = attention_rollout(weights)
    assert rolled.shape == (B, 10, 10) and cls_map(rolled, model.grid).shape == (B, 3, 3)
    with pytest.raises(TypeError):
        model(x, True)  # return_attention is keyword-only


def test_tiny_vit_tokens_follow_the_patch_grid_row_major():
    model = TinyViT(canvas=12, patch=4, embed_dim=8, depth=1, num_heads=2).eval()
    seen = []
    model.layers[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    x = torch.zeros(1, 1, 12, 12)
    model(x)
    x[0, 0, 5, 10] = 1.0  # a pixel in patch row 1, column 2 -> token 1 + 1 * 3 + 2 = 6
    model(x)
    changed = (seen[1] - seen[0]).abs().sum(-1)[0]  # (N,)
    assert changed.nonzero().flatten().tolist() == [6]


def test_tiny_vit_refuses_bad_input():
    with pytest.raises(ValueError, match="divisible"):
        TinyViT(canvas=10, patch=4)
    with pytest.raises(TypeError, match="depth"):
        TinyViT(depth=2.0)
    model = TinyViT(canvas=12, patch=4, embed_dim=8, num_heads=2)
    with pytest.raises(ValueError, match="12x12"):
        model(torch.rand(B, 1, 16, 16))
    with pytest.raises(ValueError, match="x must have 1 channels"):
        model(torch.rand(B, 3, 12, 12))
    with pytest.raises(TypeError, match="x must be floating point"):
        model(torch.ones(B, 1, 12, 12, dtype=torch.uint8))


# --- bad input and degenerate maps, one class at a time (issue #28) --------------------------

_A = _softmax_weights(1)[0]
_BOX = torch.zeros(B, 2, dtype=torch.long)


@pytest.mark.parametrize("call, error, words", [
    (lambda: attention_rollout([_A, _A.double()]), TypeError, r"attentions\[1\] must have the dtype"),
    (lambda: attention_rollout([_A[:, :0]]), ValueError, "at least one head"),
    (lambda: attention_rollout((t for t in [_A])), TypeError, "attentions must be a non-empty list"),
    (lambda: cls_map(_A, 2), TypeError, "grid must be a pair of ints"),
    (lambda: cls_map(_A, (2, 2, 1)), TypeError, "grid must be a pair of ints"),
    (lambda: cls_map(_A, (2, 0)), ValueError, "grid must be >= 1"),
    (lambda: cls_map(_A, (2.0, 2)), TypeError, "grid must be an int"),
    (lambda: box_share(torch.rand(B, 3, 3), _BOX.float(), 4), TypeError, "box must be an integer"),
    (lambda: box_share(torch.rand(B, 3, 3), _BOX.tolist(), 4), TypeError, "box must be an integer"),
    (lambda: box_share(-torch.rand(B, 3, 3), _BOX, 4), ValueError, "maps must be >= 0"),
    (lambda: box_share(torch.rand(B, 3, 3), _BOX, 4, size=0), ValueError, "size must be >= 1"),
    (lambda: box_share(torch.rand(B, 3, 3).long(), _BOX, 4), TypeError, "maps must be floating"),
    (lambda: TinyViT(embed_dim=30, num_heads=4), ValueError, "divisible by num_heads"),
    (lambda: TinyViT(embed_dim=2.5), TypeError, "embed_dim must be an int"),
    (lambda: TinyViT(num_classes=0), ValueError, "num_classes must be >= 1"),
    (lambda: TinyViT()([[1.0]]), TypeError, "x must be a torch.Tensor"),
])
def test_bad_input_gets_a_clear_error(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_box_share_of_a_map_with_no_mass_is_zero_not_nan():
    maps = torch.rand(B, 2, 3, 3)
    maps[0, 1] = 0.0  # a dead head: no mass anywhere
    share = box_share(maps, _BOX, 4)
    assert torch.isfinite(share).all() and share[0, 1] == 0
    torch.testing.assert_close(share[1], box_share(maps[1:], _BOX[1:], 4)[0])
