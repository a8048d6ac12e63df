"""Residual attention, C2f, the decoupled mask loss and loss masking."""
import pytest
import torch
import torch.nn.functional as F

from attnlab import practice
from attnlab.practice import (AttentionProposal, Bottleneck, C2f, ConvBNAct, ResidualAttention,
                              crop_and_zoom, decoupled_mask_loss, masked_bce, rank_loss)
from attnlab.spatial import CoordinateAttention
from attnlab.utils import count_parameters


def _randomise_norms(module, g):
    """Batch norms with non-trivial statistics, so eval mode is not the identity."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1, generator=g)
            m.running_var.uniform_(0.5, 2, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.uniform_(-0.5, 0.5, generator=g)


@pytest.mark.parametrize("train", [False, True])
def test_residual_attention_by_hand(train):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    block = ResidualAttention(3)
    _randomise_norms(block, g)
    block.train(train)
    x = torch.randn(2, 3, 6, 8, generator=g)
    c = block.trunk, block.down, block.up
    t = c[0][5](c[0][4](c[0][3](c[0][2](c[0][1](c[0][0](x))))))
    coarse = c[1][3](c[1][2](c[1][1](F.avg_pool2d(x, 2))))
    m = torch.sigmoid(c[2][1](F.interpolate(coarse, scale_factor=2, mode="nearest")))
    y, mask = block(x, return_attention=True)
    torch.testing.assert_close(mask, m)
    torch.testing.assert_close(y, (1 + m) * t)
    block.residual = False
    torch.testing.assert_close(block(x), m * t)


def test_residual_attention_bounds_and_contract():
    torch.manual_seed(0)
    res, naive = ResidualAttention(4).eval(), ResidualAttention(4, residual=False).eval()
    naive.load_state_dict(res.state_dict())
    x = torch.randn(3, 4, 4, 4)
    t = res.trunk(x)
    y, m = res(x, return_attention=True)
    assert y.shape == x.shape and m.shape == x.shape
    assert ((m > 0) & (m < 1)).all()
    assert (t <= y).all() and (y <= 2 * t).all()           # (1 + M) T only emphasises
    assert (naive(x) <= t).all()                            # M T only shrinks
    torch.testing.assert_close(res(x) - naive(x), t)        # the difference is the "1 +"


def test_residual_attention_errors():
    with pytest.raises(ValueError, match="even"):
        ResidualAttention(2)(torch.randn(1, 2, 5, 6))
    with pytest.raises(ValueError, match="3 channels"):
        ResidualAttention(3)(torch.randn(1, 2, 4, 4))
    with pytest.raises(TypeError, match="channels"):
        ResidualAttention(2.5)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_c2f_by_hand_and_parameter_count(n):
    torch.manual_seed(n)
    block = C2f(5, 8, n).eval()
    _randomise_norms(block, torch.Generator().manual_seed(n))
    x = torch.randn(2, 5, 6, 6)
    ys = list(block.cv1(x).chunk(2, dim=1))
    for b in block.m:
        ys.append(ys[-1] + b.cv2(b.cv1(ys[-1])))
    torch.testing.assert_close(block(x), block.cv2(torch.cat(ys, 1)))
    c, h = 8, 4
    expected = (5 * c + 2 * c) + n * 2 * (9 * h * h + 2 * h) + ((2 + n) * h * c + 2 * c)
    assert count_parameters(block) == expected


def test_c2f_contains_no_attention_unless_given_one():
    kinds = {type(m).__name__ for m in C2f(8, 8, 2).modules()}
    assert kinds == {"C2f", "ConvBNAct", "Conv2d", "BatchNorm2d", "SiLU", "ModuleList",
                     "Bottleneck", "Identity"}
    torch.manual_seed(0)
    ca = CoordinateAttention(8)
    block = C2f(8, 8, attention=ca).eval()
    x = torch.randn(2, 8, 4, 4)
    plain = block.cv2(torch.cat([*block.cv1(x).chunk(2, 1)] + [block.m[0](block.cv1(x)[:, 4:])], 1))
    torch.testing.assert_close(block(x), ca.eval()(plain))


def test_c2f_matches_ultralytics():
    """Only where the `ultralytics` package is installed (it needs OpenCV)."""
    block_module = pytest.importorskip("ultralytics.nn.modules.block")
    for n in (1, 2):
        torch.manual_seed(n)
        ref = block_module.C2f(6, 10, n=n, shortcut=True)
        _randomise_norms(ref, torch.Generator().manual_seed(n))
        ours = C2f(6, 10, n)
        ours.load_state_dict({k.replace(".conv.", ".0.").replace(".bn.", ".1."): v
                              for k, v in ref.state_dict().items()})
        x = torch.randn(2, 6, 8, 8)
        for train in (False, True):
            torch.testing.assert_close(ours.train(train)(x), ref.train(train)(x))


def test_c2f_errors():
    with pytest.raises(ValueError, match="c_out must be even"):
        C2f(4, 5)
    with pytest.raises(ValueError, match="4 channels"):
        C2f(4, 4)(torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        ConvBNAct(2, 2, 2)


def test_decoupled_mask_loss_scores_only_the_true_class():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 4, 4, generator=g, requires_grad=True)
    masks = (torch.rand(2, 2, 4, 4, generator=g) > 0.5).float()
    classes = torch.tensor([[1, 3], [0, 1]])
    loss = decoupled_mask_loss(logits, masks, classes)
    by_hand = torch.stack([F.binary_cross_entropy_with_logits(logits[b, classes[b, i]],
                                                              masks[b, i])
                           for b in range(2) for i in range(2)]).mean()
    torch.testing.assert_close(loss, by_hand)
    loss.backward()
    untouched = [(0, 2), (0, 4), (1, 2), (1, 3), (1, 4)]
    assert all(logits.grad[b, k].abs().sum() == 0 for b, k in untouched)
    assert logits.grad[0, 1].abs().sum() > 0


def test_decoupled_mask_loss_errors():
    logits, masks = torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match=r"classes must lie in \[0, 3\)"):
        decoupled_mask_loss(logits, masks, torch.tensor([[0, 3]]))
    with pytest.raises(ValueError, match=r"classes must have shape \(B, I\)"):
        decoupled_mask_loss(logits, masks, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="same B, H, W"):
        decoupled_mask_loss(logits, torch.zeros(1, 2, 4, 5), torch.tensor([[0, 1]]))


def test_masked_bce_averages_only_where_allowed():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 3, 3, generator=g, requires_grad=True)
    target = (torch.rand(2, 1, 3, 3, generator=g) > 0.5).float()
    where = torch.rand(2, 1, 3, 3, generator=g) > 0.4
    loss = masked_bce(logits, target, where)
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(logits[where],
                                                                       target[where]))
    loss.backward()
    assert (logits.grad[~where] == 0).all()
    everywhere = masked_bce(logits, target, torch.ones_like(where))
    torch.testing.assert_close(everywhere, F.binary_cross_entropy_with_logits(logits, target))
    nowhere = masked_bce(logits, target, torch.zeros_like(where))
    assert nowhere.item() == 0.0


def test_masked_bce_errors():
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(TypeError, match="where must be boolean"):
        masked_bce(x, x, torch.ones(1, 1, 2, 2))            # not boolean
    with pytest.raises(ValueError, match="shape of logits"):
        masked_bce(x, torch.zeros(1, 1, 2, 3), torch.ones(1, 1, 2, 2, dtype=torch.bool))


def test_attention_proposal_starts_centred_and_follows_the_peak():
    apn = AttentionProposal(3)
    a = torch.rand(2, 3, 6, 6)
    centre, side = apn(a)
    torch.testing.assert_close(centre, torch.zeros(2, 2))
    torch.testing.assert_close(side, torch.full((2,), 2 / 3))
    with torch.no_grad():                      # score = 20 x channel 0: a peak at (row 1, col 4)
        apn.score.weight[0, 0] = 20.0
    a = torch.zeros(1, 3, 6, 6)
    a[0, 0, 1, 4] = 1.0
    centre, _ = apn(a)
    want = torch.tensor([[(4 + 0.5) / 6 * 2 - 1, (1 + 0.5) / 6 * 2 - 1]])   # (x, y)
    torch.testing.assert_close(centre, want, atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="3 channels"):
        apn(torch.zeros(1, 2, 6, 6))


def test_crop_and_zoom_cuts_the_square_and_passes_gradients():
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    whole = crop_and_zoom(x, torch.zeros(1, 2), torch.ones(1), 8)
    torch.testing.assert_close(whole, x)                      # the whole image, unchanged
    # the top-left quarter: centre (-0.5, -0.5), side 1/2, sampled at its own 4x4 pixels
    quarter = crop_and_zoom(x, torch.tensor([[-0.5, -0.5]]), torch.tensor([0.5]), 4)
    torch.testing.assert_close(quarter, x[:, :, :4, :4])
    centre = torch.tensor([[0.1, -0.2]], requires_grad=True)
    side = torch.tensor([0.6], requires_grad=True)
    crop_and_zoom(torch.rand(1, 1, 8, 8), centre, side, 5).sum().backward()
    assert centre.grad.abs().sum() > 0 and side.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"centre must be \(B, 2\)"):
        crop_and_zoom(x, torch.zeros(2), torch.ones(1), 4)


def test_rank_loss_by_hand_and_only_the_fine_scale_learns():
    coarse = torch.tensor([[2.0, 0.0], [0.0, 1.0]], requires_grad=True)
    fine = torch.tensor([[1.0, 0.0], [0.0, 3.0]], requires_grad=True)
    y = torch.tensor([0, 1])
    p1 = coarse.softmax(-1)[[0, 1], y]
    p2 = fine.softmax(-1)[[0, 1], y]
    want = (p1 - p2 + 0.05).clamp(min=0).mean()
    loss = rank_loss(coarse, fine, y)
    torch.testing.assert_close(loss, want.detach())
    assert (p1[0] - p2[0] + 0.05) > 0 and (p1[1] - p2[1] + 0.05) < 0   # one active, one not
    loss.backward()
    assert coarse.grad is None or coarse.grad.abs().sum() == 0
    assert fine.grad[0].abs().sum() > 0 and fine.grad[1].abs().sum() == 0
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        rank_loss(coarse, fine[:1], y)


# --- C2f's shortcut, the contract the module docstring states, empty inputs (issue #28) ------

@pytest.mark.parametrize("shortcut", [True, False])
def test_c2f_shortcut_is_documented_and_switchable(shortcut):
    torch.manual_seed(0)
    block = C2f(6, 8, 2, shortcut=shortcut).eval()
    x = torch.randn(2, 6, 5, 5)
    ys = list(block.cv1(x).chunk(2, dim=1))
    for b in block.m:
        inner = b.cv2(b.cv1(ys[-1]))
        ys.append(ys[-1] + inner if shortcut else inner)
    torch.testing.assert_close(block(x), block.cv2(torch.cat(ys, 1)))
    assert "shortcut=True" in C2f.__doc__ and "shortcut=False" in C2f.__doc__
    torch.manual_seed(0)  # the default is the block with shortcuts, parameter for parameter
    default = C2f(6, 8, 2).eval()
    assert all(b.shortcut for b in default.m)
    if shortcut:
        torch.testing.assert_close(default(x), block(x), atol=0, rtol=0)


def test_the_module_docstring_names_who_keeps_the_contract():
    doc = practice.__doc__
    assert "return_attention" in doc and ":class:`ResidualAttention`" in doc
    assert "do not keep it" in doc
    y, m = ResidualAttention(2).eval()(torch.randn(1, 2, 4, 4), return_attention=True)
    assert m.shape == y.shape


_L1, _L2, _Y = torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0, 1, 2])
_LOG, _MSK = torch.randn(2, 3, 4, 4), (torch.rand(2, 2, 4, 4) > 0.5).float()
_CLS = torch.tensor([[0, 1], [2, 0]])


@pytest.mark.parametrize("call, error, words", [
    # constructors
    (lambda: ConvBNAct(2, 2, act_layer=3), TypeError, "act_layer must be a function"),
    (lambda: ConvBNAct(2, 2, stride=0), ValueError, "stride must be >= 1"),
    (lambda: C2f(4, 4, attention=3), TypeError, "attention must be an nn.Module"),
    (lambda: C2f(4, 4, n=0), ValueError, "n must be >= 1"),
    (lambda: C2f(4.0, 4), TypeError, "c_in must be an int"),
    (lambda: Bottleneck(0), ValueError, "channels must be >= 1"),
    (lambda: AttentionProposal(True), TypeError, "channels must be an int"),
    # feature maps
    (lambda: Bottleneck(4)(torch.randn(1, 3, 4, 4)), ValueError, "x must have 4 channels"),
    (lambda: AttentionProposal(3)([[1.0]]), TypeError, "a must be a torch.Tensor"),
    (lambda: ResidualAttention(2)(torch.ones(1, 2, 4, 4, dtype=torch.long)), TypeError,
     "x must be floating point"),
    # the crop: tensors of the right kind and shape, an int size
    (lambda: crop_and_zoom(torch.rand(2, 1, 8, 8), [[0.0, 0.0]] * 2, torch.ones(2), 4), TypeError,
     "centre must be a torch.Tensor"),
    (lambda: crop_and_zoom(torch.rand(2, 1, 8, 8), torch.zeros(2, 2), torch.ones(2, dtype=torch.long),
                           4), TypeError, "side must be floating point"),
    (lambda: crop_and_zoom(torch.rand(2, 1, 8, 8), torch.zeros(2, 2), torch.ones(2), 0), ValueError,
     "size must be >= 1"),
    (lambda: crop_and_zoom(torch.rand(2, 1, 8, 8), torch.zeros(2, 2), torch.ones(2), 2.0), TypeError,
     "size must be an int"),
    # the ranking loss: classes, their range, an empty batch, the margin
    (lambda: rank_loss(_L1, _L2, _Y.float()), TypeError, "y must hold integer ids"),
    (lambda: rank_loss(_L1, _L2, torch.tensor([0, 1, 4])), ValueError, r"y must lie in \[0, 4\)"),
    (lambda: rank_loss(_L1, _L2, torch.tensor([0, 1, -1])), ValueError, r"y must lie in \[0, 4\)"),
    (lambda: rank_loss(_L1, _L2, _Y[:, None]), ValueError, r"y must have shape \(B,\)"),
    (lambda: rank_loss(_L1.tolist(), _L2, _Y), TypeError, "logits_coarse must be a torch.Tensor"),
    (lambda: rank_loss(_L1, _L2[:, :3], _Y), ValueError, "must both be"),
    (lambda: rank_loss(_L1[:0], _L2[:0], _Y[:0]), ValueError, "at least one sample"),
    (lambda: rank_loss(_L1, _L2, _Y, margin=float("nan")), ValueError, "margin must be a finite"),
    (lambda: rank_loss(_L1, _L2, _Y, margin="0.1"), TypeError, "margin must be a number"),
    # the mask losses: integer classes, float targets, boolean masks
    (lambda: decoupled_mask_loss(_LOG, _MSK, _CLS.float()), TypeError, "classes must hold integer"),
    (lambda: decoupled_mask_loss(_LOG, _MSK, _CLS.tolist()), TypeError, "classes must be a torch"),
    (lambda: decoupled_mask_loss(_LOG, _MSK > 0, _CLS), TypeError, "masks must be floating point"),
    (lambda: decoupled_mask_loss(_LOG, _MSK, -_CLS - 1), ValueError, r"classes must lie in"),
    (lambda: masked_bce(_LOG, [0.0], _MSK > 0), TypeError, "target must be a torch.Tensor"),
    (lambda: masked_bce(_LOG[:, :1], _MSK[:, :1], [True]), TypeError, "where must be a boolean"),
    (lambda: masked_bce(_LOG[:, :1], _MSK[:, :1], _MSK[:, :1, :2] > 0), ValueError,
     "where must have shape"),
])
def test_bad_input_gets_a_clear_error(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_decoupled_mask_loss_with_no_instance_is_zero_not_nan():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    for masks, classes in ((_MSK[:, :0], _CLS[:, :0]), (_MSK[:0], _CLS[:0])):
        loss = decoupled_mask_loss(logits if len(masks) else logits[:0], masks, classes)
        assert loss.item() == 0.0
    loss.backward()  # a zero gradient, no error
