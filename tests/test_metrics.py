"""plasticity.metrics against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from plasticity import metrics as M


def _layer() -> torch.Tensor:
    """(B=4, F=5) activations whose per-unit mean |a| is [0, 0.02, 0.08, 0.4, 4.5]:
    layer mean 1.0, so the ReDo scores equal those means."""
    return torch.tensor([
        # dead  0.02   0.08   0.4   4.5
        [0.0, 0.08, 0.16, 0.4, 9.0],
        [0.0, 0.00, 0.16, -0.4, 9.0],   # a negative entry: the score uses |a|
        [0.0, 0.00, 0.00, 0.4, 0.0],
        [0.0, 0.00, 0.00, -0.4, 0.0],
    ])


def test_neuron_scores_are_means_over_layer_mean():
    scores = M.neuron_scores(_layer()).tolist()
    assert scores == pytest.approx([0.0, 0.02, 0.08, 0.4, 4.5], rel=1e-6)


@pytest.mark.parametrize(
    "tau, expected", [(0.0, 1 / 5), (0.025, 2 / 5), (0.1, 3 / 5), (0.5, 4 / 5)])
def test_dormant_ratio_at_several_thresholds(tau, expected):
    acts = _layer()
    assert M.dormant_ratio(acts, tau).item() == pytest.approx(expected)
    mask = M.dormant_mask(acts, tau)
    assert mask.tolist() == [i < round(expected * 5) for i in range(5)]


def test_dormant_threshold_is_inclusive_and_tau_zero_is_exactly_dead():
    # scores [0.5, 1.5]: a score equal to tau is dormant
    acts = torch.tensor([[0.5, 1.5], [0.5, 1.5]])
    assert M.dormant_ratio(acts, 0.5).item() == 0.5
    assert M.dormant_ratio(acts, 0.4999).item() == 0.0
    # a unit active on one input with a tiny value is not dead
    tiny = torch.tensor([[1e-30, 1.0], [0.0, 1.0]])
    assert M.dormant_ratio(tiny, 0.0).item() == 0.0
    assert M.dormant_ratio(tiny, 0.025).item() == 0.5


def test_all_dead_layer_has_zero_scores_and_is_all_dormant():
    acts = torch.zeros(3, 4)
    assert M.neuron_scores(acts).tolist() == [0.0] * 4
    assert M.dormant_ratio(acts, 0.0).item() == 1.0
    assert M.dormant_ratio(acts, 0.025).item() == 1.0


def test_conv_units_average_over_batch_and_space():
    # (B=2, C=2, H=2, W=2). Channel 0 fires once (value 4, at one position of one
    # sample): mean 4/8 = 0.5. Channel 1 is 1 everywhere: mean 1. Layer mean 0.75.
    acts = torch.zeros(2, 2, 2, 2)
    acts[0, 0, 0, 0] = 4.0
    acts[:, 1] = 1.0
    assert M.neuron_scores(acts).tolist() == pytest.approx([2 / 3, 4 / 3])
    assert M.dormant_ratio(acts, 0.0).item() == 0.0
    assert M.dormant_ratio(acts, 0.7).item() == 0.5
    # averaging over the batch only (each channel x position a unit) would say 3 of 8
    # units are dead: the channel definition must not.
    assert M.dormant_ratio(acts.flatten(1), 0.0).item() == 3 / 8
    # 1-D and 3-D convolutions: channel = dim 1, everything else averaged
    assert M.neuron_scores(acts.flatten(2)).tolist() == pytest.approx([2 / 3, 4 / 3])
    assert M.neuron_scores(acts.unsqueeze(-1)).tolist() == pytest.approx([2 / 3, 4 / 3])


def test_rejects_unbatched_activations():
    with pytest.raises(ValueError, match="shape"):
        M.neuron_scores(torch.ones(5))


def test_active_units_rectifier_counts_positive_entries():
    acts = torch.tensor([[1.0, 0.0, -0.5], [2.0, 0.0, 0.3]])
    assert M.active_fraction(acts).tolist() == [1.0, 0.0, 0.5]
    assert M.active_units(acts).item() == 0.5
    conv = torch.zeros(2, 2, 2, 2)
    conv[0, 0, 1, 1] = 3.0          # 1 of 8 entries of channel 0
    conv[:, 1, 0] = 1.0             # 4 of 8 entries of channel 1
    assert M.active_fraction(conv).tolist() == [1 / 8, 1 / 2]
    assert M.active_units(conv).item() == pytest.approx(5 / 16)


def test_tanh_saturation_and_activity():
    acts = torch.tensor([
        [1.0, 0.995, -0.999],
        [-1.0, -0.2, 0.98],
    ])
    # unit 0 is saturated on both inputs (at opposite ends), unit 1 on one, unit 2 on one
    # (0.98 < 0.99 is not saturated)
    assert M.saturated_mask(acts).tolist() == [True, False, False]
    assert M.saturated_ratio(acts).item() == pytest.approx(1 / 3)
    assert M.active_fraction(acts, (-1.0, 1.0)).tolist() == [0.0, 0.5, 0.5]
    assert M.active_units(acts, (-1.0, 1.0)).item() == pytest.approx(1 / 3)
    # the ReDo score calls the saturated unit the busiest one: nothing dormant
    assert M.dormant_ratio(acts, 0.1).item() == 0.0
    assert M.saturated_ratio(acts, threshold=0.999).item() == pytest.approx(1 / 3)
    assert M.saturated_ratio(acts, threshold=0.98).item() == pytest.approx(2 / 3)


def test_sigmoid_saturation_uses_its_range_and_conv_channels():
    # 2y - 1 = [[0.998, 0], [-0.992, 0.8]]: unit 0 saturated on both inputs
    acts = torch.tensor([[0.999, 0.5], [0.004, 0.9]])
    assert M.saturated_mask(acts, 0.99, 0.0, 1.0).tolist() == [True, False]
    conv = torch.tensor([[[[1.0, 1.0]], [[1.0, 0.0]]]])  # (1, 2, 1, 2)
    assert M.saturated_ratio(conv).item() == 0.5
    with pytest.raises(ValueError):
        M.saturated_ratio(acts, 0.99, 1.0, 0.0)


def _matrix(sigma: list[float], rows: int = 7, cols: int = 6, dtype=torch.float64) -> torch.Tensor:
    """U diag(sigma) V^T with orthonormal columns in U (rows x k) and V (cols x k)."""
    g = torch.Generator().manual_seed(3)
    k = len(sigma)
    u, _ = torch.linalg.qr(torch.randn(rows, k, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, k, generator=g, dtype=torch.float64))
    return (u @ torch.diag(torch.tensor(sigma, dtype=torch.float64)) @ v.T).to(dtype)


def test_effective_rank_of_known_spectrum():
    # p = [1/2, 1/4, 1/8, 1/8]: entropy = (1/2 + 1/2 + 3/4) ln 2 = 1.75 ln 2
    x = _matrix([4.0, 2.0, 1.0, 1.0])
    assert M.effective_rank(x).item() == pytest.approx(2 ** 1.75, rel=1e-9)
    assert M.effective_rank(x.float()).item() == pytest.approx(2 ** 1.75, rel=1e-4)
    # k equal singular values: effective rank k
    assert M.effective_rank(_matrix([3.0, 3.0, 3.0])).item() == pytest.approx(3.0, rel=1e-9)
    # the feature matrix is flattened per sample
    assert M.effective_rank(x.reshape(7, 2, 3)).item() == pytest.approx(2 ** 1.75, rel=1e-9)


@pytest.mark.parametrize("delta, k", [(0.01, 4), (0.2, 3), (0.3, 2), (0.6, 1)])
def test_srank_of_known_spectrum(delta, k):
    # cumulative share of sigma = [4, 2, 1, 1]: 0.5, 0.75, 0.875, 1
    x = _matrix([4.0, 2.0, 1.0, 1.0])
    assert M.srank(x, delta).item() == k
    assert M.srank(x.float(), delta).item() == k
    erank, sr = M.feature_ranks(x, delta)
    assert (erank.item(), sr.item()) == (pytest.approx(2 ** 1.75, rel=1e-9), k)


def test_ranks_of_degenerate_features():
    assert M.effective_rank(torch.zeros(4, 3)).item() == 0.0
    assert M.srank(torch.zeros(4, 3)).item() == 0.0
    bad = torch.ones(4, 3)
    bad[1, 2] = float("nan")
    assert math.isnan(M.effective_rank(bad).item())
    assert math.isnan(M.srank(bad).item())


def test_feature_norm_is_mean_per_sample_l2():
    f = torch.tensor([[3.0, 4.0], [0.0, 0.0], [6.0, 8.0]])
    assert M.feature_norm(f).item() == pytest.approx(5.0)
    assert M.feature_norm(f.reshape(3, 1, 2)).item() == pytest.approx(5.0)


def _net() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 4.0]]))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[1.0, 2.0]]))
        net[2].bias.fill_(2.0)
    return net


def test_weight_norm_total_and_per_layer():
    total, per_layer = M.weight_norm(_net())
    assert per_layer.keys() == {"0", "2"}
    assert per_layer["0"].item() == pytest.approx(5.0)       # sqrt(9 + 16)
    assert per_layer["2"].item() == pytest.approx(3.0)       # sqrt(1 + 4 + 4)
    assert total.item() == pytest.approx(math.sqrt(34.0))
    # norm layers count in the total, not as layers; a bare Linear is "root"
    ln = nn.Sequential(_net(), nn.LayerNorm(2))
    total, per_layer = M.weight_norm(ln)
    assert per_layer.keys() == {"0.0", "0.2"}
    assert total.item() == pytest.approx(math.sqrt(36.0))    # + |ones(2)|^2
    conv = nn.Conv2d(1, 1, 2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(0.5)
    _, per_layer = M.weight_norm(conv)
    assert per_layer["root"].item() == pytest.approx(1.0)     # sqrt(4 * 0.25)
    # an embedding owns a 2-D weight but is no Linear/Conv layer: in the total only
    emb = nn.Sequential(nn.Embedding(2, 2), _net())
    with torch.no_grad():
        emb[0].weight.fill_(1.0)
    total, per_layer = M.weight_norm(emb)
    assert per_layer.keys() == {"1.0", "1.2"}
    assert total.item() == pytest.approx(math.sqrt(38.0))    # + 4 * 1^2


def test_weight_distance_from_snapshot():
    net = _net()
    ref = M.snapshot(net)
    assert M.weight_distance(net, ref).item() == 0.0
    with torch.no_grad():
        for p in net.parameters():   # 4 + 2 + 2 + 1 = 9 numbers, each moved by 1
            p.add_(1.0)
    assert M.weight_distance(net, ref).item() == pytest.approx(3.0)
    # the snapshot is a copy, not a view of the live parameters
    assert ref["0.weight"].tolist() == [[3.0, 0.0], [0.0, 4.0]]
    # parameters the snapshot does not know are ignored
    del ref["2.bias"]
    assert M.weight_distance(net, ref).item() == pytest.approx(math.sqrt(8.0))
    ref["0.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="0.weight"):
        M.weight_distance(net, ref)


def test_grad_norm_of_current_grads():
    net = _net()
    assert M.grad_norm(net) is None
    net[0].weight.grad = torch.full((2, 2), 2.0)   # 4 * 4 = 16
    net[2].bias.grad = torch.tensor([3.0])         # 9
    assert M.grad_norm(net).item() == pytest.approx(5.0)


def test_accumulation_dtypes_defaults_and_edge_cases():
    from plasticity import metrics as M

    a64, a16 = torch.rand(4, 3, dtype=torch.float64), torch.rand(4, 3).half()
    assert M.unit_means(a64).dtype == torch.float64 and M.unit_means(a16).dtype == torch.float32
    assert M.feature_norm(a64).dtype == torch.float64 and M.feature_norm(a16).dtype == torch.float32
    assert M.weight_norm(nn.Linear(2, 2).double())[0].dtype == torch.float64
    assert M.weight_norm(nn.Linear(2, 2).half())[0].dtype == torch.float32
    # tau = 0.025 by default: 0.02 is above 0.025 * mean(1, 0.02, 1) = 0.0168, 0.01 below it
    assert M.dormant_mask_from_means(torch.tensor([1.0, 0.02, 1.0])).tolist() == [False, False, False]
    assert M.dormant_mask_from_means(torch.tensor([1.0, 0.01, 1.0])).tolist() == [False, True, False]
    acts = torch.tensor([[1.0, 0.02, 1.0], [1.0, 0.02, 1.0]])
    assert M.dormant_mask(acts).tolist() == [False, False, False] and M.dormant_ratio(acts).item() == 0.0
    with pytest.raises(ValueError) as err:
        M.saturated_mask(acts, low=1.0, high=1.0)
    assert str(err.value) == "saturation range needs high > low, got (1.0, 1.0)"
    y = torch.tensor([[0.6, 0.1], [0.2, -0.7]])
    assert M.active_units(y, (-1.0, 1.0), threshold=0.5).item() == pytest.approx(0.5)
    assert M.saturated_ratio(torch.tensor([[1.9], [1.95]]), 0.85, 0.0, 2.0).item() == 1.0  # rescaled: 0.9, 0.95
    assert M.saturated_ratio(torch.tensor([[1.0]]), 0.85, 0.0, 2.0).item() == 0.0  # the middle of [0, 2]
    assert M.saturated_ratio(torch.tensor([[1.0]]), 0.85, 0.0).item() == 1.0  # the top of [0, 1], the default


def test_ranks_are_scale_free_count_exactly_and_take_integer_features():
    from plasticity import metrics as M

    f = torch.tensor([[3.0, 0.0, 1.0], [0.0, 2.0, 0.0], [1.0, 0.0, 0.5]])
    for scale in (1.0, 0.01):  # a total of singular values below 1 changes nothing
        assert M.effective_rank(scale * f).item() == pytest.approx(M.effective_rank(f).item(), rel=1e-5)
        assert M.srank(scale * f).item() == M.srank(f).item() == 3
    assert M.srank(torch.eye(2), delta=0.5).item() == 1  # the sum reaches exactly (1 - delta) of the total at k = 1
    d = torch.diag(torch.tensor([1.0, 0.02]))
    assert M.srank(d).item() == 2 and M.feature_ranks(d)[1].item() == 2  # delta = 0.01: 1 < 0.99 * 1.02
    assert M.effective_rank(torch.eye(3, dtype=torch.int64)).item() == pytest.approx(3.0)


def test_weight_norm_and_distance_without_parameters_or_references():
    from plasticity import metrics as M

    total, per_layer = M.weight_norm(nn.ReLU())
    assert total.item() == 0.0 and per_layer == {}
    m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    assert M.weight_distance(m, {}).item() == 0.0
    ref = {"1.weight": m[1].weight.detach() + 3.0}  # "0.*" are not in the reference: skipped, not the end
    assert M.weight_distance(m, ref).item() == pytest.approx(6.0)  # sqrt(4 * 9)
