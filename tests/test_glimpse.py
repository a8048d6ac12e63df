"""The glimpse sensor, the recurrent attention model and its REINFORCE loss."""
import pytest
import torch
import torch.nn.functional as F

from attnlab.glimpse import RecurrentAttention, glimpse, reinforce_loss

WHERE = ("look", "steer", "score")          # the location network's parameters


def by_hand(x, loc, size, scales):
    """The retina cut with slices: pad, pool, cut around the location rounded to whole pixels."""
    B, C, H, W = x.shape
    out = torch.zeros(B, scales, C, size, size, dtype=x.dtype)
    for b in range(B):
        col, row = ((loc[b] + 1) / 2 * torch.tensor([W, H], dtype=loc.dtype)).tolist()
        for s in range(scales):
            level = F.avg_pool2d(x[b:b + 1], 2**s, ceil_mode=True) if s else x[b:b + 1]
            level = F.pad(level, (size,) * 4)
            r0 = round(row / 2**s - size / 2) + size
            c0 = round(col / 2**s - size / 2) + size
            out[b, s] = level[0, :, r0:r0 + size, c0:c0 + size]
    return out


@pytest.mark.parametrize("shape", [(3, 1, 24, 24), (2, 2, 16, 20), (1, 3, 9, 13)])
def test_glimpse_equals_slices_everywhere(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=g)
    for loc in (torch.zeros(shape[0], 2), torch.rand(shape[0], 2, generator=g) * 2 - 1,
                torch.tensor([[-1.0, -1.0]]).repeat(shape[0], 1),
                torch.tensor([[1.0, 1.0]]).repeat(shape[0], 1)):
        got = glimpse(x, loc, size=4, scales=3)
        assert got.shape == (shape[0], 3, shape[1], 4, 4)
        torch.testing.assert_close(got, by_hand(x, loc, 4, 3))


def test_glimpse_sees_zeros_outside_and_the_whole_image_when_wide_enough():
    x = torch.rand(2, 1, 8, 8)
    corner = glimpse(x, torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), size=4, scales=1)
    assert corner[0, 0, 0, :2].abs().sum() == 0 and corner[0, 0, 0, 2:, 2:].abs().sum() > 0
    assert corner[1, 0, 0, 2:].abs().sum() == 0 and corner[1, 0, 0, :2, :2].abs().sum() > 0
    whole = glimpse(x, torch.zeros(2, 2), size=4, scales=2)[:, 1]     # 8x8 pixels seen as 4x4
    torch.testing.assert_close(whole, F.avg_pool2d(x, 2))


def test_glimpse_has_no_gradient_to_the_location():
    x = torch.rand(2, 1, 12, 12, requires_grad=True)
    loc = torch.zeros(2, 2, requires_grad=True)
    assert not glimpse(x.detach(), loc).requires_grad
    glimpse(x, loc).sum().backward()
    assert loc.grad is None and x.grad is not None


@pytest.mark.parametrize("kwargs, error, words", [
    ({"loc": torch.zeros(2, 3)}, ValueError, "loc must have shape (B, 2)"),
    ({"loc": torch.zeros(3, 2)}, ValueError, "loc must have shape (B, 2)"),
    ({"loc": [[0.0, 0.0]] * 2}, TypeError, "loc must be a torch.Tensor"),
    ({"size": 0}, ValueError, "size must be >= 1"),
    ({"scales": 1.5}, TypeError, "scales must be an int"),
])
def test_glimpse_bad_input(kwargs, error, words):
    args = {"x": torch.rand(2, 1, 8, 8), "loc": torch.zeros(2, 2)} | kwargs
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        glimpse(**args)


def test_glimpse_refuses_integer_images_and_wrong_rank():
    with pytest.raises(TypeError, match="floating point"):
        glimpse(torch.zeros(1, 1, 8, 8, dtype=torch.long), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="x"):
        glimpse(torch.zeros(1, 8, 8), torch.zeros(1, 2))


def test_model_contract_and_shapes():
    torch.manual_seed(0)
    model = RecurrentAttention(num_classes=7, in_channels=2, glimpses=4, hidden=16)
    x = torch.rand(5, 2, 24, 24)
    assert model(x).shape == (5, 7)
    logits, info = model(x, return_attention=True)
    assert logits.shape == (5, 7)
    assert info["locations"].shape == (5, 4, 2) and info["logits"].shape == (5, 4, 7)
    assert info["log_prob"].shape == info["baseline"].shape == (5, 3)
    assert torch.equal(info["locations"][:, 0], torch.zeros(5, 2))      # the first at the centre
    assert info["locations"].abs().max() <= 1
    torch.testing.assert_close(info["logits"][:, -1], logits)
    one = RecurrentAttention(glimpses=1, hidden=8)(torch.rand(2, 1, 16, 16), return_attention=True)
    assert one[1]["log_prob"].shape == (2, 0) and one[1]["locations"].shape == (2, 1, 2)
    with pytest.raises(ValueError, match="x must have 2 channels"):
        model(torch.rand(5, 1, 24, 24))
    with pytest.raises(ValueError, match="std must be a positive number"):
        RecurrentAttention(std=0.0)


def test_eval_uses_the_mean_and_training_samples():
    torch.manual_seed(0)
    model = RecurrentAttention(hidden=16, std=0.3)
    x = torch.rand(4, 1, 24, 24)
    model.eval()
    a = model(x, return_attention=True)[1]["locations"]
    b = model(x, return_attention=True)[1]["locations"]
    assert torch.equal(a, b)
    model.train()
    c = model(x, return_attention=True)[1]["locations"]
    assert not torch.equal(a, c)
    d = model(x, return_attention=True, sample=False)[1]["locations"]
    assert torch.equal(a, d)


def test_log_prob_is_the_gaussian_log_density_of_the_sample():
    torch.manual_seed(1)
    model = RecurrentAttention(glimpses=2, hidden=16, std=0.01)   # one sampled location
    x = torch.rand(6, 1, 24, 24)
    mean = model(x, return_attention=True, sample=False)[1]["locations"][:, 1]
    info = model(x, return_attention=True, sample=True)[1]
    sample = info["locations"][:, 1]
    assert sample.abs().max() < 1                                 # nothing was clamped
    density = torch.distributions.Normal(mean, 0.01).log_prob(sample).sum(-1)
    constant = 2 * (torch.log(torch.tensor(0.01)) + 0.5 * torch.log(torch.tensor(2 * torch.pi)))
    torch.testing.assert_close(info["log_prob"], density[:, None] + constant)


def gradients(model, loss):
    model.zero_grad()
    loss.backward()
    return {name.split(".")[0]: p.grad for name, p in model.named_parameters()}


def test_each_part_learns_from_its_own_term():
    torch.manual_seed(0)
    model = RecurrentAttention(hidden=16)
    x, y = torch.rand(8, 1, 24, 24), torch.randint(10, (8,))
    logits, info = model(x, return_attention=True)
    ce = F.cross_entropy(info["logits"].flatten(0, 1), y.repeat_interleave(3))
    grads = gradients(model, ce)
    assert all(grads[k] is None for k in WHERE + ("baseline",)), "CE reaches no policy weight"
    assert grads["classifier"] is not None and grads["what"] is not None
    logits, info = model(x, return_attention=True)
    loss, parts = reinforce_loss(logits, y, info)
    grads = gradients(model, loss)
    assert all(grads[k] is not None and grads[k].abs().sum() > 0 for k in WHERE + ("baseline",))
    logits, info = model(x, return_attention=True)
    loss, _ = reinforce_loss(logits, y, info, train_policy=False)
    grads = gradients(model, loss)
    assert all(grads[k] is None for k in WHERE), "the control's location network never learns"


def test_reinforce_loss_terms():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 3, 10, generator=g)
    y = torch.randint(10, (6,), generator=g)
    info = {"logits": logits, "log_prob": torch.randn(6, 2, generator=g, requires_grad=True),
            "baseline": torch.rand(6, 2, generator=g, requires_grad=True)}
    reward = (logits[:, -1].argmax(-1) == y).float()
    loss, parts = reinforce_loss(logits[:, -1], y, info)
    ce = F.cross_entropy(logits.flatten(0, 1), y.repeat_interleave(3))
    policy = -(info["log_prob"] * (reward[:, None] - info["baseline"].detach())).sum(1).mean()
    base = ((reward[:, None] - info["baseline"]) ** 2).mean()
    torch.testing.assert_close(loss, ce + policy + base)
    torch.testing.assert_close(parts["reward"], reward.mean())
    plain, _ = reinforce_loss(logits[:, -1], y, info, use_baseline=False)
    plain_policy = -(info["log_prob"] * reward[:, None]).sum(1).mean()
    torch.testing.assert_close(plain, ce + plain_policy + base)
    # the advantage is a constant: the policy term sends no gradient into the baseline
    parts_grad = torch.autograd.grad(loss - base, info["baseline"], allow_unused=True)[0]
    assert parts_grad is None or parts_grad.abs().max() == 0


def test_location_network_is_a_convolution_then_soft_argmax():
    torch.manual_seed(0)
    model = RecurrentAttention(in_channels=2, hidden=16)
    coarse, h = torch.rand(3, 2, 8, 8), torch.rand(3, 16)
    f = F.relu(model.look(coarse) + model.steer(h)[:, :, None, None])          # (3, 8, 8, 8)
    score = F.conv2d(f, model.score.weight[:, :, None, None], model.score.bias)
    torch.testing.assert_close(model.where(coarse, h), model.argmax(score)[:, :2])


def test_reinforce_loss_names_a_wrong_target():
    model = RecurrentAttention(hidden=8)
    logits, info = model(torch.rand(4, 1, 16, 16), return_attention=True)
    with pytest.raises(ValueError, match=r"y must have shape \(B,\) = \(4,\)"):
        reinforce_loss(logits, torch.zeros(3, dtype=torch.long), info)


# --- bad input, one class at a time (issue #28) ----------------------------------------------

_RAM = RecurrentAttention(glimpses=2, hidden=8).eval()
_LOGITS, _INFO = _RAM(torch.rand(2, 1, 12, 12), return_attention=True)
_Y = torch.tensor([0, 1])


@pytest.mark.parametrize("call, error, words", [
    # the sensor: locations must be finite floats
    (lambda: glimpse(torch.rand(2, 1, 8, 8), torch.full((2, 2), float("nan"))), ValueError,
     "loc must be finite"),
    (lambda: glimpse(torch.rand(2, 1, 8, 8), torch.zeros(2, 2, dtype=torch.long)), TypeError,
     "loc must be floating point"),
    # the model's hyper-parameters
    (lambda: RecurrentAttention(std=float("nan")), ValueError, "std must be a finite number"),
    (lambda: RecurrentAttention(std=float("inf")), ValueError, "std must be a finite number"),
    (lambda: RecurrentAttention(std="0.1"), TypeError, "std must be a number"),
    (lambda: RecurrentAttention(std=-0.1), ValueError, "std must be a positive number"),
    (lambda: RecurrentAttention(hidden=0), ValueError, "hidden must be >= 1"),
    (lambda: RecurrentAttention(num_classes=2.0), TypeError, "num_classes must be an int"),
    (lambda: RecurrentAttention(glimpses=0), ValueError, "glimpses must be >= 1"),
    (lambda: _RAM(torch.rand(2, 3, 12, 12)), ValueError, "x must have 1 channels"),
    (lambda: _RAM(torch.rand(2, 1, 0, 12)), ValueError, "at least one position"),
    # the loss: classes, their range, the dict the model returned, an empty batch
    (lambda: reinforce_loss(_LOGITS, _Y.float(), _INFO), TypeError, "y must hold integer ids"),
    (lambda: reinforce_loss(_LOGITS, [0, 1], _INFO), TypeError, "y must be a torch.Tensor"),
    (lambda: reinforce_loss(_LOGITS, torch.tensor([0, 10]), _INFO), ValueError,
     r"y must lie in \[0, 10\)"),
    (lambda: reinforce_loss(_LOGITS, _Y[:, None], _INFO), ValueError, r"y must have shape \(B,\)"),
    (lambda: reinforce_loss(_LOGITS[0], _Y, _INFO), ValueError, r"logits must have shape \(B, "),
    (lambda: reinforce_loss(_LOGITS.tolist(), _Y, _INFO), TypeError, "logits must be a torch.Tensor"),
    (lambda: reinforce_loss(_LOGITS, _Y, [_INFO]), TypeError, "info must be the dict"),
    (lambda: reinforce_loss(_LOGITS, _Y, {"logits": _INFO["logits"]}), TypeError,
     r'info\["log_prob"\] must be a torch.Tensor'),
    (lambda: reinforce_loss(_LOGITS, _Y, {**_INFO, "baseline": _INFO["baseline"][:, :0]}),
     ValueError, r'info\["baseline"\] must have shape \(B, G - 1\)'),
    (lambda: reinforce_loss(_LOGITS, _Y, {**_INFO, "logits": _INFO["logits"][:1]}), ValueError,
     r'info\["logits"\] must have shape \(B, G, K\)'),
    (lambda: reinforce_loss(_LOGITS[:0], _Y[:0], {k: t[:0] for k, t in _INFO.items()}),
     ValueError, "logits must hold at least one sample"),
])
def test_bad_input_gets_a_clear_error(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_a_location_outside_the_image_is_moved_to_its_edge():
    x = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(glimpse(x, torch.tensor([[5.0, -3.0]])),
                               glimpse(x, torch.tensor([[1.0, -1.0]])))
