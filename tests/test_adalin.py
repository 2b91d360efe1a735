from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import plasticity as pl
from plasticity import adalin
from plasticity.adalin import AdaLin

# ---- hand formulas, in plain Python floats ---------------------------------------------


def _cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _pdf(x: float) -> float:
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def _gelu_tanh(x: float) -> tuple[float, float]:
    k = math.sqrt(2 / math.pi)
    u = k * (x + 0.044715 * x**3)
    t = math.tanh(u)
    return 0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)


# name -> (AdaLin kwargs, phi(x), phi'(x), L)
HAND = {
    "relu": (dict(base="relu"), lambda x: max(x, 0.0), lambda x: 1.0 if x > 0 else 0.0, 1.0),
    "leaky_relu": (
        dict(base="leaky_relu", negative_slope=0.2),
        lambda x: x if x > 0 else 0.2 * x,
        lambda x: 1.0 if x > 0 else 0.2,
        1.0,
    ),
    "leaky_relu_steep": (
        dict(base=nn.LeakyReLU(-1.5)),
        lambda x: x if x > 0 else -1.5 * x,
        lambda x: 1.0 if x > 0 else -1.5,
        1.5,
    ),
    "tanh": (dict(base="tanh"), math.tanh, lambda x: 1 - math.tanh(x) ** 2, 1.0),
    "gelu": (
        dict(base="gelu"),
        lambda x: x * _cdf(x),
        lambda x: _cdf(x) + x * _pdf(x),
        1.1289041451846482,  # max |phi'| found on a fine grid, see test_lipschitz_constants
    ),
    "gelu_tanh": (
        dict(base=nn.GELU(approximate="tanh")),
        lambda x: _gelu_tanh(x)[0],
        lambda x: _gelu_tanh(x)[1],
        1.1289930686579455,
    ),
}

X = [[-3.0, -0.5, 0.0], [0.25, 1.0, 2.5], [-1.0, 4.0, -0.01], [1.414, -1.414, 0.7]]
ALPHA = [0.5, -0.3, 1.2]
V = [[1.0, -2.0, 0.5], [0.3, 1.0, -1.0], [2.0, 0.1, 1.0], [-0.5, 0.7, 1.5]]


@pytest.mark.parametrize("name", list(HAND))
def test_values_and_gradients_match_hand_formula(name):
    kwargs, phi, dphi, lip = HAND[name]
    kwargs = dict(kwargs)
    base = kwargs.pop("base")
    act = AdaLin(base, 3, **kwargs).double()
    assert act.lipschitz == pytest.approx(lip, rel=1e-9)
    with torch.no_grad():
        act.alpha.copy_(torch.tensor(ALPHA, dtype=torch.double))
    x = torch.tensor(X, dtype=torch.double, requires_grad=True)
    y = act(x)
    (y * torch.tensor(V, dtype=torch.double)).sum().backward()

    gate = [[math.cos(math.pi / 2 * abs(dphi(v)) / lip) for v in row] for row in X]
    want_y = [
        [phi(v) + ALPHA[i] * v * gate[b][i] for i, v in enumerate(row)] for b, row in enumerate(X)
    ]
    want_dx = [
        [V[b][i] * (dphi(v) + ALPHA[i] * gate[b][i]) for i, v in enumerate(row)]
        for b, row in enumerate(X)
    ]
    want_da = [sum(V[b][i] * X[b][i] * gate[b][i] for b in range(len(X))) for i in range(3)]
    for got, want in [(y, want_y), (x.grad, want_dx), (act.alpha.grad, want_da)]:
        torch.testing.assert_close(
            got, torch.tensor(want, dtype=torch.double), rtol=1e-10, atol=1e-10
        )


def test_gate_endpoints():
    # tanh: no injection at 0 (slope 1 = L), full injection deep in saturation
    act = AdaLin("tanh", 2).double()
    g = act.gate(torch.tensor([0.0, 30.0], dtype=torch.double))
    assert g.tolist() == [0.0, 1.0]
    # relu: the gate is exactly the indicator of x <= 0
    g = AdaLin("relu", 3).gate(torch.tensor([-1.0, 0.0, 2.0]))
    assert g.tolist() == [1.0, 1.0, 0.0]


def test_lipschitz_constants():
    x = torch.linspace(-6, 6, 1_200_001, dtype=torch.double, requires_grad=True)
    for approx, const in [("none", adalin.GELU_LIPSCHITZ), ("tanh", adalin.GELU_TANH_LIPSCHITZ)]:
        (grad,) = torch.autograd.grad(nn.functional.gelu(x, approximate=approx).sum(), x)
        assert const == pytest.approx(grad.abs().max().item(), rel=1e-9)
    assert adalin.GELU_LIPSCHITZ == pytest.approx(1.1289041451846482, rel=1e-12)


@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 3, 2)])
def test_relu_adalin_is_per_neuron_prelu(shape):
    act = AdaLin(nn.ReLU(), 4)
    prelu = nn.PReLU(num_parameters=4)
    slopes = torch.tensor([0.25, -0.5, 0.0, 1.3])
    with torch.no_grad():
        act.alpha.copy_(slopes)
        prelu.weight.copy_(slopes)
    x1 = torch.randn(shape, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    v = torch.randn(shape)
    y1, y2 = act(x1), prelu(x2)
    torch.testing.assert_close(y1, y2)
    (y1 * v).sum().backward()
    (y2 * v).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(act.alpha.grad, prelu.weight.grad)


def test_generic_path_on_last_axis_equals_prelu():
    act = AdaLin("relu", 4, dim=-1)  # features last: not PReLU's axis, so the formula path
    prelu = nn.PReLU(num_parameters=4)
    slopes = torch.tensor([0.25, -0.5, 0.0, 1.3])
    with torch.no_grad():
        act.alpha.copy_(slopes)
        prelu.weight.copy_(slopes)
    x1 = torch.randn(2, 3, 4, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    v = torch.randn(2, 3, 4)
    y1, y2 = act(x1), prelu(x2.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(y1, y2)
    (y1 * v).sum().backward()
    (y2 * v).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(act.alpha.grad, prelu.weight.grad)


def test_convert_mlp_keeps_function():
    model = nn.Sequential(
        nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 5),
        nn.LeakyReLU(0.1), nn.Linear(5, 3),
    )
    x = torch.randn(10, 4)
    before = model(x)
    assert pl.adalin.convert(model) is model
    acts = [m for m in model.modules() if isinstance(m, AdaLin)]
    assert [(a.kind, a.num_features) for a in acts] == [("relu", 8), ("tanh", 6), ("leaky_relu", 5)]
    assert acts[2].negative_slope == pytest.approx(0.1)
    assert not any(isinstance(m, (nn.ReLU, nn.Tanh, nn.LeakyReLU)) for m in model.modules())
    assert torch.equal(model(x), before)
    assert AdaLin.is_activation and acts[0].is_activation


def test_convert_nested_cnn_keeps_function():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(
                nn.Conv2d(2, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 6, 3, stride=2),
                nn.GELU(), nn.Flatten(),
            )
            self.head = nn.Sequential(nn.Linear(6 * 2 * 2, 7), nn.ReLU(), nn.Linear(7, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.encoder(x))

    model = Net()
    x = torch.randn(5, 2, 7, 7)
    before = model(x)
    adalin.convert(model, alpha_init=0.0)
    acts = [m for m in model.modules() if isinstance(m, AdaLin)]
    assert [(a.kind, a.num_features, a.dim) for a in acts] == [
        ("relu", 4, 1), ("gelu", 6, 1), ("relu", 7, -1)
    ]
    assert torch.equal(model(x), before)
    # the alphas are parameters and receive gradient
    model(x).sum().backward()
    assert all(a.alpha.grad is not None and a.alpha.grad.abs().sum() > 0 for a in acts)


def test_convert_alpha_init():
    model = adalin.convert(nn.Sequential(nn.Linear(2, 3), nn.ReLU()), alpha_init=0.25)
    assert model[1].alpha.tolist() == [0.25, 0.25, 0.25]


@pytest.mark.parametrize(
    "model",
    [
        nn.Sequential(nn.ReLU(), nn.Linear(3, 3)),
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.ReLU()),
    ],
)
def test_convert_raises_when_width_unknown(model):
    with pytest.raises(ValueError, match="adalin: cannot infer the width of activation"):
        adalin.convert(model)


@pytest.mark.parametrize(
    "args, message",
    [
        (("swish", 3), "adalin: base must be one of relu, leaky_relu, tanh, gelu, got 'swish'"),
        (("relu", 0), "adalin: num_features must be an integer >= 1, got 0"),
        (
            (nn.Sigmoid(), 3),
            "adalin: base must be one of relu, leaky_relu, tanh, gelu (or their nn modules), "
            "got Sigmoid",
        ),
    ],
)
def test_bad_arguments_raise(args, message):
    with pytest.raises(ValueError) as err:
        AdaLin(*args)
    assert str(err.value) == message


def test_reset_parameters_restores_alpha_init():
    act = AdaLin("tanh", 3, alpha_init=0.5)
    with torch.no_grad():
        act.alpha.add_(1.0)
    act.reset_parameters()
    assert act.alpha.tolist() == [0.5, 0.5, 0.5]


def test_convert_reads_widths_from_the_forward_pass():
    class OutOfOrder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act2 = nn.Tanh()          # registered before the layers it follows
            self.out = nn.Linear(5, 2)
            self.fc2 = nn.Linear(3, 5)
            self.act1 = nn.ReLU()
            self.fc1 = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.act2(self.fc2(self.act1(self.fc1(x)))))

    m = OutOfOrder()
    x = torch.randn(6, 4)
    before = m(x)
    adalin.convert(m)
    assert (m.act1.kind, m.act1.num_features, m.act2.kind, m.act2.num_features) == ("relu", 3, "tanh", 5)
    assert torch.equal(m(x), before)

    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2, self.act = nn.Linear(4, 3), nn.Linear(3, 5), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.fc2(self.act(self.fc1(x))))

    with pytest.raises(ValueError, match="adalin: activation 'act' is called after layers of different widths"):
        adalin.convert(Shared())


def test_tanh_gelu_derivative_and_the_maximum_search_behind_its_lipschitz_constant():
    for x in (-2.0, -0.3, 0.0, 0.8, 1.5, 3.0):
        t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        torch.nn.functional.gelu(t, approximate="tanh").backward()
        assert adalin._gelu_tanh_grad(x) == pytest.approx(t.grad.item(), rel=1e-12, abs=1e-12), x
    # the search returns the maximum value (not its position) of a unimodal function
    assert adalin._argmax_unimodal(lambda x: 2.0 - (x - 1.3) ** 2, 0.5, 3.0) == pytest.approx(2.0, abs=1e-12)
    assert adalin._argmax_unimodal(lambda x: -abs(x - 0.7), 0.0, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert adalin._argmax_unimodal(adalin._gelu_tanh_grad, 0.5, 3.0) == adalin.GELU_TANH_LIPSCHITZ


def test_repr_defaults_and_more_refusals():
    assert AdaLin("relu", 3).extra_repr() == "relu, num_features=3, dim=1"
    assert (AdaLin("leaky_relu", 2, negative_slope=0.2, dim=-1).extra_repr()
            == "leaky_relu, negative_slope=0.2, num_features=2, dim=-1")
    assert AdaLin("gelu", 2, approximate="tanh").extra_repr() == "gelu, approximate='tanh', num_features=2, dim=1"
    assert AdaLin("gelu", 2).extra_repr() == "gelu, num_features=2, dim=1"
    assert AdaLin("tanh", 4, approximate="tanh").extra_repr() == "tanh, num_features=4, dim=1"
    act = AdaLin("relu", 3)
    assert act.alpha_init == 0.0 and act.alpha.tolist() == [0.0, 0.0, 0.0]
    assert AdaLin("leaky_relu", 2).negative_slope == 0.01
    assert AdaLin("relu", 1).alpha.shape == (1,)
    for bad in (True, 2.0):
        with pytest.raises(ValueError) as err:
            AdaLin("relu", bad)
        assert str(err.value) == f"adalin: num_features must be an integer >= 1, got {bad!r}"
    with pytest.raises(ValueError) as err:
        AdaLin("gelu", 2, approximate="fast")
    assert str(err.value) == "adalin: approximate must be 'none' or 'tanh', got 'fast'"
    with pytest.raises(ValueError) as err:
        adalin.convert(nn.ReLU())
    assert str(err.value) == "adalin: convert needs a container; build AdaLin(base, num_features) directly"


def test_traced_widths_pass_norms_dropout_and_other_activations_but_not_a_widening_one():
    from plasticity.crelu import CReLU

    m = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Dropout(0.0), nn.Tanh(), nn.ReLU(), nn.Linear(4, 2))
    adalin.convert(m)
    assert [(m[i].kind, m[i].num_features, m[i].dim) for i in (3, 4)] == [("tanh", 4, -1), ("relu", 4, -1)]
    with pytest.raises(ValueError) as err:
        adalin.convert(nn.Sequential(nn.Linear(3, 4), CReLU(dim=-1), nn.ReLU()))
    assert str(err.value) == ("adalin: cannot infer the width of activation '2' (ReLU): no Linear/Conv layer "
                              "feeds it in the forward pass; build AdaLin(base, num_features) for it by hand")


class _Untraceable(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(-x if x.sum() > 0 else x)


def test_untraceable_networks_are_converted_in_registration_order():
    body = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(),
                         nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh()),
                         nn.Linear(5, 4), nn.LeakyReLU(0.2))
    m = _Untraceable(body)
    x = torch.randn(2, 1, 4, 4)
    before = m(x)
    assert adalin.convert(m, alpha_init=0.0) is m
    got = {n: (a.kind, a.num_features, a.dim) for n, a in m.named_modules() if isinstance(a, AdaLin)}
    assert got == {"body.1": ("relu", 3, 1), "body.2.2": ("tanh", 5, -1), "body.4": ("leaky_relu", 4, -1)}
    assert body[4].negative_slope == 0.2 and torch.equal(m(x), before)
    m2 = adalin.convert(_Untraceable(nn.Sequential(nn.Linear(2, 3), nn.ReLU())), alpha_init=0.5)
    assert m2.body[1].alpha.tolist() == [0.5, 0.5, 0.5]
    for body, path in [(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.ReLU()), "body.2"),
                       (nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.ReLU(), nn.Unflatten(1, (3, 1)),
                                                                     nn.ReLU())), "body.1.2"),
                       (nn.Sequential(nn.ReLU()), "body.0")]:
        with pytest.raises(ValueError) as err:
            adalin.convert(_Untraceable(body))
        name = type(body.get_submodule(path.removeprefix("body."))).__name__
        assert str(err.value) == (f"adalin: cannot infer the width of activation {path!r} ({name}): no Linear/Conv "
                                  "layer right before it in registration order; build AdaLin(base, num_features) "
                                  "for it by hand")
    from plasticity.crelu import CReLU

    with pytest.raises(ValueError, match="activation 'body.2'"):
        adalin.convert(_Untraceable(nn.Sequential(nn.Linear(2, 3), CReLU(), nn.ReLU())))


def test_gate_is_exactly_zero_where_the_slope_is_the_lipschitz_constant():
    x = torch.tensor([-2.0, -0.5, 0.5, 2.0])
    assert AdaLin("leaky_relu", 4, negative_slope=0.2, dim=0).gate(x)[2:].tolist() == [0.0, 0.0]
    assert AdaLin("leaky_relu", 4, negative_slope=-1.0, dim=0).gate(x).tolist() == [0.0, 0.0, 0.0, 0.0]
