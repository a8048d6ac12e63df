"""attnlab.induction: the repeated-segment task, the head scores on hand-made attention, ablation."""
import math

import pytest
import torch

from attnlab import induction as ind
from attnlab.lm import TinyLM


def causal_uniform(B, h, T):
    w = torch.ones(T, T).tril()
    return (w / w.sum(-1, keepdim=True)).expand(B, h, T, T).clone()


def previous_token(B, h, T):
    w = torch.zeros(T, T)
    w[0, 0] = 1.0
    w[torch.arange(1, T), torch.arange(T - 1)] = 1.0
    return w.expand(B, h, T, T).clone()


# --- the task -------------------------------------------------------------------------------

def test_task_repeats_with_a_period_per_sequence():
    g = torch.Generator().manual_seed(0)
    ids, copy = ind.repeated_segments(64, 24, 16, period=(5, 9), generator=g)
    assert ids.shape == copy.shape == (64, 24) and ids.dtype == torch.long
    assert copy.dtype == torch.bool and 0 <= ids.min() and ids.max() < 16
    periods = set()
    for x, c in zip(ids, copy):
        p = int(c.long().argmax())                    # the first position where copying is right
        periods.add(p)
        assert 5 <= p <= 9 and not c[:p].any() and c[p:-1].all() and not c[-1]
        assert torch.equal(x[p:], x[:-p])             # x_t = x_{t-p}
    assert len(periods) >= 4                          # the period varies from sequence to sequence


def test_task_is_seeded_and_defaults_to_a_quarter_to_half():
    a = ind.repeated_segments(8, 32, 10, generator=torch.Generator().manual_seed(3))
    b = ind.repeated_segments(8, 32, 10, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    first = a[1].long().argmax(1)
    assert first.min() >= 8 and first.max() <= 16


def test_losses_per_position():
    ids, copy = ind.repeated_segments(4, 12, 7, generator=torch.Generator().manual_seed(1))
    uniform = ind.next_token_loss(torch.zeros(4, 12, 7), ids)
    assert uniform.shape == (4, 12) and torch.isnan(uniform[:, -1]).all()
    assert torch.allclose(uniform[:, :-1], torch.full((4, 11), math.log(7)))
    perfect = torch.full((4, 12, 7), -30.0).scatter(2, ids.roll(-1, 1)[..., None], 30.0)
    assert ind.next_token_loss(perfect, ids)[:, :-1].max() < 1e-6
    # the in-context unigram: smoothing 1 on the first token gives (0 + 1) / (1 + V) or 2 / (1 + V)
    uni = ind.unigram_loss(ids, 7, 1.0)
    first = torch.where(ids[:, 1] == ids[:, 0], 2 / 8, 1 / 8)
    assert torch.allclose(uni[:, 0], -first.log()) and torch.isnan(uni[:, -1]).all()
    assert ind.unigram_loss(ids, 7, 1e6)[:, :-1].sub(math.log(7)).abs().max() < 1e-4


# --- scores on hand-made attention ------------------------------------------------------------

def test_previous_token_score_known_values():
    T = 10
    assert torch.allclose(ind.previous_token_score(previous_token(2, 3, T)), torch.ones(3))
    expected = sum(1 / (t + 1) for t in range(1, T)) / (T - 1)
    assert torch.allclose(ind.previous_token_score(causal_uniform(2, 3, T)),
                          torch.full((3,), expected))
    mixed = torch.stack([previous_token(1, 1, T)[0, 0], torch.eye(T)])[None]  # (1, 2, T, T)
    assert torch.allclose(ind.previous_token_score(mixed), torch.tensor([1.0, 0.0]))


def test_prefix_matching_score_known_values():
    ids = torch.tensor([[3, 1, 4, 5, 3, 1, 4, 5]])               # period 4, all tokens distinct
    T = ids.shape[1]
    induction = torch.zeros(T, T)
    induction[:4, 0] = 1.0                                       # nothing to match: anywhere
    induction[torch.arange(4, 8), torch.arange(1, 5)] = 1.0      # t -> t - 4 + 1
    attn = torch.stack([induction, previous_token(1, 1, T)[0, 0], causal_uniform(1, 1, T)[0, 0]])
    score = ind.prefix_matching_score(attn[None], ids)
    # queries 4..7 qualify; uniform puts 1 / (t + 1) on the one successor
    assert torch.allclose(score, torch.tensor([1.0, 0.0, sum(1 / (t + 1) for t in range(4, 8)) / 4]))
    only = torch.zeros(1, 8, dtype=torch.bool)
    only[0, 7] = True
    assert torch.allclose(ind.prefix_matching_score(attn[None], ids, only)[2], torch.tensor(1 / 8))
    # two earlier occurrences: both successors count
    ids2 = torch.tensor([[2, 7, 2, 9, 2]])
    w = torch.zeros(5, 5)
    w[4, 1], w[4, 3] = 0.5, 0.5
    q = torch.tensor([[False, False, False, False, True]])
    assert torch.allclose(ind.prefix_matching_score(w[None, None], ids2, q), torch.tensor([1.0]))
    # no query qualifies: NaN, not 0
    assert torch.isnan(ind.prefix_matching_score(w[None, None], torch.arange(5)[None])).all()


def test_copying_score_of_a_hand_made_copying_head():
    V, D = 8, 16
    model = TinyLM(V, D, num_heads=2, num_layers=1, positions="none", mlp=False)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.weight[:, :V] = 4 * torch.eye(V) - 0.5       # one direction per token
        model.blocks[0].ln1.weight.fill_(1.0)
        model.ln_f.weight.fill_(1.0)
        a = model.blocks[0].attn
        a.v_proj.weight[:V, :V] = torch.eye(V)                   # head 0 reads dims 0..7
        a.out_proj.weight[:V, :V] = torch.eye(V)                 # and writes them back
        a.v_proj.weight[8:, :V] = -torch.eye(V)                  # head 1 writes the opposite
        a.out_proj.weight[:V, 8:] = torch.eye(V)
        model.unembed.weight[:, :V] = torch.eye(V)
    assert torch.allclose(ind.copying_score(model, 0), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"layer must be in \[0, 1\)"):
        ind.copying_score(model, 1)
    with pytest.raises(TypeError, match="TinyLM"):
        ind.copying_score(torch.nn.Linear(2, 2), 0)


# --- ablation and identification --------------------------------------------------------------

def test_head_mask_and_ablation_leave_other_heads_untouched():
    torch.manual_seed(0)
    model = TinyLM(11, 16, num_heads=2, num_layers=2, positions="learned", max_len=12,
                   mlp=False).eval()
    ids = torch.randint(0, 11, (3, 12))
    mask = ind.head_mask(2, 2, [(0, 1)])
    assert torch.equal(mask, torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    with torch.no_grad():
        full, w_full = model(ids, return_attention=True)
        cut, w_cut = model(ids, head_mask=mask, return_attention=True)
        again, _ = model(ids, return_attention=True)
    assert torch.equal(w_cut[0], w_full[0])                      # layer 0's weights: unchanged
    assert not torch.allclose(w_cut[1], w_full[1])               # layer 1 reads a changed stream
    assert not torch.allclose(cut, full) and torch.equal(again, full)  # no state kept
    with torch.no_grad():                                        # = zeroing W^O's columns of head 1
        manual = TinyLM(11, 16, num_heads=2, num_layers=2, positions="learned", max_len=12,
                        mlp=False).eval()
        manual.load_state_dict(model.state_dict())
        manual.blocks[0].attn.out_proj.weight[:, 8:] = 0
        assert torch.allclose(manual(ids), cut, atol=1e-6)
    last = ind.head_mask(2, 2, [(1, 0)])
    with torch.no_grad():
        _, w_last = model(ids, head_mask=last, return_attention=True)
    assert all(torch.equal(a, b) for a, b in zip(w_last, w_full))  # weights come before outputs


def test_find_heads_names_the_circuit():
    prev = torch.tensor([[0.1, 0.9, 0.2], [0.95, 0.1, 0.1]])       # the last layer is not a candidate
    induction = torch.tensor([[0.99, 0.0, 0.0], [0.1, 0.2, 0.8]])  # layer 0 cannot be the induction head
    assert ind.find_heads(prev, induction) == {"previous_token": (0, 1), "induction": (1, 2)}


# --- bad input ----------------------------------------------------------------------------------

def test_bad_input():
    with pytest.raises(ValueError, match="period"):
        ind.repeated_segments(2, 10, 5, period=(1, 4))
    with pytest.raises(ValueError, match="period"):
        ind.repeated_segments(2, 10, 5, period=(4, 10))
    with pytest.raises(TypeError, match="period"):
        ind.repeated_segments(2, 10, 5, period=4)
    with pytest.raises(ValueError, match="length"):
        ind.repeated_segments(2, 3, 5)
    with pytest.raises(TypeError, match="batch_size"):
        ind.repeated_segments(2.0, 10, 5)
    with pytest.raises(TypeError, match="generator"):
        ind.repeated_segments(2, 10, 5, generator=0)
    with pytest.raises(ValueError, match=r"attn must be .*\(B, h, T, T\)"):
        ind.previous_token_score(torch.ones(2, 5, 5))
    with pytest.raises(TypeError, match="attn must be floating point"):
        ind.previous_token_score(torch.ones(1, 1, 5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"ids must have shape \(B, T\)"):
        ind.prefix_matching_score(torch.ones(1, 1, 5, 5), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="ids must hold integer ids"):
        ind.prefix_matching_score(torch.ones(1, 1, 5, 5), torch.zeros(1, 5))
    with pytest.raises(ValueError, match="queries must have shape"):
        ind.prefix_matching_score(torch.ones(1, 1, 5, 5), torch.zeros(1, 5, dtype=torch.long),
                                  torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"logits must have shape \(B, T, V\)"):
        ind.next_token_loss(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 5\)"):
        ind.next_token_loss(torch.zeros(1, 3, 5), torch.tensor([[0, 1, 5]]))
    with pytest.raises(ValueError, match="smoothing"):
        ind.unigram_loss(torch.zeros(1, 3, dtype=torch.long), 5, 0.0)
    with pytest.raises(ValueError, match="off must hold"):
        ind.head_mask(2, 2, [(2, 0)])
    with pytest.raises(TypeError, match="off"):
        ind.head_mask(2, 2, [(0, True)])
    with pytest.raises(ValueError, match=r"\(L, h\) with L >= 2"):
        ind.find_heads(torch.ones(1, 3), torch.ones(1, 3))


@pytest.mark.parametrize("positions", ["rope", "learned"])
def test_attention_scores_give_back_the_weights(positions):
    torch.manual_seed(1)
    model = TinyLM(13, 16, num_heads=2, num_layers=2, positions=positions, max_len=10,
                   mlp=False).eval()
    ids = torch.randint(0, 13, (2, 10))
    with torch.no_grad():
        _, weights = model(ids, return_attention=True)
    scores = ind.attention_scores(model, ids)
    causal = torch.ones(10, 10, dtype=torch.bool).tril()
    for s, w in zip(scores, weights):
        assert s.shape == (2, 2, 10, 10)
        assert torch.allclose(s.masked_fill(~causal, float("-inf")).softmax(-1), w, atol=1e-5)
    assert all(not m.attn._forward_hooks for m in model.blocks)        # hooks removed


def test_induction_explorer_marks_occurrences_and_checks_its_input():
    from attnlab.live_lm import induction_explorer, induction_roles

    roles = induction_roles([4, 7, 4, 9, 4])
    assert roles[2].tolist() == [1, 2, 0, 0, 0]               # x_0 = 4 earlier, x_1 follows it
    assert roles[4].tolist() == [1, 2, 1, 2, 0]               # two earlier occurrences
    assert roles[:2].sum() == 0 and roles[3].sum() == 0       # first occurrences: nothing
    scores = torch.randn(2, 5, 5)
    spec = induction_explorer(scores, [4, 7, 4, 9, 4], head_names=["a", "b"]).to_dict()
    rows = spec["data"]["values"]                               # one row per (head, query)
    assert len(rows) == 2 * 5 and rows[9]["role"] == ["earlier occurrence", "its successor",
                                                      "earlier occurrence", "its successor",
                                                      "other"]
    assert {p["name"] for p in spec["params"]} == {"head", "query", "temperature", "masked"}
    with pytest.raises(ValueError, match=r"\(H, T, T\)"):
        induction_explorer(torch.randn(2, 5, 4), [1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="tokens must be 5 integer ids"):
        induction_explorer(scores, [1, 2, 3])
    with pytest.raises(ValueError, match="head_names must be 2 strings"):
        induction_explorer(scores, [1, 2, 3, 4, 5], head_names=["a"])
    with pytest.raises(ValueError, match="query must be a position"):
        induction_explorer(scores, [1, 2, 3, 4, 5], query=5)
    with pytest.raises(ValueError, match="finite"):
        induction_explorer(scores.masked_fill(torch.ones(5, 5).triu(1).bool(), float("-inf")),
                           [1, 2, 3, 4, 5])
