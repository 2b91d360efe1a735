"""The encoders and Q heads of `agents/networks.py`, layer by layer and value by value.

Each network is checked against its paper's layer list (kernel, stride, widths) and against a
forward pass written out by hand from its own parameters, so a wrong width, stride, activation,
norm placement or head formula fails here, not only in a learning run.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from agents.compile.forms import tracing_for_compile
from agents.networks import (
    CastToFloat,
    ImpalaCNN,
    MinAtarCNN,
    MLPEncoder,
    NatureCNN,
    QNetwork,
    ResidualBlock,
    ScalarHead,
    ScaleImage,
    default_encoder,
    make_encoder,
)
from plasticity.crelu import CReLU


def _layers(module: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, kind)]


def _conv_spec(c: nn.Conv2d) -> tuple:
    return c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding


def test_nature_cnn_is_the_layer_list_of_mnih_et_al():
    enc = NatureCNN((4, 84, 84))
    assert [_conv_spec(c) for c in _layers(enc, nn.Conv2d)] == [
        (4, 32, (8, 8), (4, 4), (0, 0)),
        (32, 64, (4, 4), (2, 2), (0, 0)),
        (64, 64, (3, 3), (1, 1), (0, 0)),
    ]
    (fc,) = _layers(enc, nn.Linear)
    assert (fc.in_features, fc.out_features) == (64 * 7 * 7, 512)
    assert enc.out_dim == 512
    assert len(_layers(enc, nn.ReLU)) == 4
    assert enc(torch.zeros(3, 4, 84, 84, dtype=torch.uint8)).shape == (3, 512)


def test_nature_cnn_forward_by_hand_scales_bytes_to_unit_interval():
    torch.manual_seed(0)
    enc = NatureCNN((2, 36, 36))
    x = torch.randint(0, 256, (2, 2, 36, 36), dtype=torch.uint8)
    c0, c1, c2 = _layers(enc, nn.Conv2d)
    (fc,) = _layers(enc, nn.Linear)
    h = x.float() / 255.0
    h = F.relu(F.conv2d(h, c0.weight, c0.bias, stride=4))
    h = F.relu(F.conv2d(h, c1.weight, c1.bias, stride=2))
    h = F.relu(F.conv2d(h, c2.weight, c2.bias, stride=1))
    want = F.relu(F.linear(h.flatten(1), fc.weight, fc.bias))
    torch.testing.assert_close(enc(x), want, rtol=0, atol=1e-6)


def test_crelu_doubles_the_input_width_of_every_following_layer():
    enc = NatureCNN((4, 84, 84), activation="crelu")
    assert [c.in_channels for c in _layers(enc, nn.Conv2d)] == [4, 64, 128]
    (fc,) = _layers(enc, nn.Linear)
    assert fc.in_features == 2 * 64 * 7 * 7
    assert enc.out_dim == 1024
    assert len(_layers(enc, CReLU)) == 4
    assert enc(torch.zeros(1, 4, 84, 84, dtype=torch.uint8)).shape == (1, 1024)


def test_layer_norm_follows_each_layer_before_its_activation():
    enc = NatureCNN((4, 84, 84), activation="tanh", norm="layer")
    kinds = [type(m).__name__ for m in enc]
    assert kinds == ["ScaleImage", "Conv2d", "GroupNorm", "Tanh", "Conv2d", "GroupNorm", "Tanh",
                     "Conv2d", "GroupNorm", "Tanh", "Flatten", "Linear", "LayerNorm", "Tanh"]
    assert [g.num_groups for g in _layers(enc, nn.GroupNorm)] == [1, 1, 1]
    assert [g.num_channels for g in _layers(enc, nn.GroupNorm)] == [32, 64, 64]
    (ln,) = _layers(enc, nn.LayerNorm)
    assert ln.normalized_shape == (512,)


def test_mlp_encoder_blocks_and_widths():
    enc = MLPEncoder(6, hidden=(5, 3), activation="leaky_relu", norm="layer")
    assert [type(m).__name__ for m in enc] == ["Flatten", "Linear", "LayerNorm", "LeakyReLU",
                                               "Linear", "LayerNorm", "LeakyReLU"]
    assert [(m.in_features, m.out_features) for m in _layers(enc, nn.Linear)] == [(6, 5), (5, 3)]
    assert enc.out_dim == 3
    wide = MLPEncoder(6, hidden=(5, 3), activation="crelu")
    assert [(m.in_features, m.out_features) for m in _layers(wide, nn.Linear)] == [(6, 5), (10, 3)]
    assert wide.out_dim == 6
    assert MLPEncoder(4).out_dim == 256
    assert [m.out_features for m in _layers(MLPEncoder(4), nn.Linear)] == [256, 256]


def test_mlp_encoder_forward_by_hand_flattens_its_input():
    torch.manual_seed(1)
    enc = MLPEncoder(6, hidden=(4,), activation="tanh")
    x = torch.randn(5, 2, 3)
    (fc,) = _layers(enc, nn.Linear)
    torch.testing.assert_close(enc(x), torch.tanh(x.reshape(5, 6) @ fc.weight.T + fc.bias))


def test_minatar_cnn_is_young_and_tians_network():
    enc = MinAtarCNN((7, 10, 10))
    (conv,) = _layers(enc, nn.Conv2d)
    assert _conv_spec(conv) == (7, 16, (3, 3), (1, 1), (0, 0))
    (fc,) = _layers(enc, nn.Linear)
    assert (fc.in_features, fc.out_features) == (16 * 8 * 8, 128)
    assert enc.out_dim == 128
    wide = MinAtarCNN((7, 10, 10), activation="crelu")
    (fc,) = _layers(wide, nn.Linear)
    assert fc.in_features == 2 * 16 * 8 * 8
    assert wide.out_dim == 256


def test_minatar_cnn_reads_cells_unscaled_whatever_their_dtype():
    torch.manual_seed(2)
    enc = MinAtarCNN((3, 10, 10), norm="layer")
    cells = torch.rand(4, 3, 10, 10) < 0.3
    (conv,) = _layers(enc, nn.Conv2d)
    (fc,) = _layers(enc, nn.Linear)
    gn, ln = enc[2], enc[6]
    h = F.relu(gn(F.conv2d(cells.float(), conv.weight, conv.bias)))
    want = F.relu(ln(F.linear(h.flatten(1), fc.weight, fc.bias)))
    for x in (cells, cells.to(torch.uint8), cells.float()):
        torch.testing.assert_close(enc(x), want, rtol=0, atol=1e-6)


def test_cast_to_float_and_scale_image():
    ints = torch.tensor([[0, 1, 255]], dtype=torch.uint8)
    assert CastToFloat()(ints).dtype == torch.float32
    assert CastToFloat()(ints).tolist() == [[0.0, 1.0, 255.0]]
    f = torch.tensor([0.5, 2.0], dtype=torch.float64)
    assert CastToFloat()(f) is f
    torch.testing.assert_close(ScaleImage()(ints), torch.tensor([[0.0, 1 / 255, 1.0]]), rtol=0, atol=1e-9)
    assert ScaleImage()(ints).dtype == torch.float32
    assert ScaleImage()(f) is f


def test_impala_cnn_stages_and_output():
    enc = ImpalaCNN((3, 64, 64))
    blocks = _layers(enc, ResidualBlock)
    assert len(blocks) == 6
    assert [b.conv0.in_channels for b in blocks] == [16, 16, 32, 32, 32, 32]
    stage_convs = [m for m in enc if isinstance(m, nn.Conv2d)]
    assert [_conv_spec(c) for c in stage_convs] == [
        (3, 16, (3, 3), (1, 1), (1, 1)), (16, 32, (3, 3), (1, 1), (1, 1)), (32, 32, (3, 3), (1, 1), (1, 1))]
    pools = _layers(enc, nn.MaxPool2d)
    assert [(p.kernel_size, p.stride, p.padding) for p in pools] == [(3, 2, 1)] * 3
    (fc,) = _layers(enc, nn.Linear)
    assert (fc.in_features, fc.out_features) == (32 * 8 * 8, 256)
    assert enc.out_dim == 256
    # odd sizes round up at each stride-2 pool: 21 -> 11 -> 6 -> 3
    (fc,) = _layers(ImpalaCNN((3, 21, 21)), nn.Linear)
    assert fc.in_features == 32 * 3 * 3
    assert ImpalaCNN((3, 21, 21))(torch.zeros(2, 3, 21, 21, dtype=torch.uint8)).shape == (2, 256)


def test_residual_block_forward_by_hand():
    torch.manual_seed(3)
    block = ResidualBlock(4, "relu", "layer")
    assert isinstance(block.norm0, nn.GroupNorm) and isinstance(block.norm1, nn.GroupNorm)
    x = torch.randn(2, 4, 5, 5)
    y = block.norm0(F.conv2d(F.relu(x), block.conv0.weight, block.conv0.bias, padding=1))
    y = block.norm1(F.conv2d(F.relu(y), block.conv1.weight, block.conv1.bias, padding=1))
    torch.testing.assert_close(block(x), x + y)
    plain = ResidualBlock(4, "tanh", None)
    assert isinstance(plain.norm0, nn.Identity) and isinstance(plain.act1, nn.Tanh)


def test_impala_cnn_refuses_a_width_changing_activation():
    with pytest.raises(ValueError, match="impala_cnn does not support activation 'crelu'"):
        ImpalaCNN((3, 16, 16), activation="crelu")


def test_q_network_heads_by_hand():
    torch.manual_seed(4)
    enc = MLPEncoder(3, hidden=(8,))
    z_of = lambda x: enc(x)  # noqa: E731
    x = torch.randn(5, 3)
    q = QNetwork(enc, num_actions=4)
    assert not hasattr(q, "value")
    torch.testing.assert_close(q(x), z_of(x) @ q.head.weight.T + q.head.bias)
    d = QNetwork(enc, num_actions=4, dueling=True)
    assert (d.value.in_features, d.value.out_features) == (8, 1)
    assert (d.head.in_features, d.head.out_features) == (8, 4)
    v = z_of(x) @ d.value.weight.T + d.value.bias
    a = z_of(x) @ d.head.weight.T + d.head.bias
    torch.testing.assert_close(d(x), v + a - a.mean(dim=1, keepdim=True))
    # the dueling advantages are centred per sample: Q - V averages to zero over actions
    torch.testing.assert_close((d(x) - v).mean(dim=1), torch.zeros(5), rtol=0, atol=1e-6)


def test_scalar_head_compiled_form_equals_the_linear_layer():
    torch.manual_seed(5)
    head = ScalarHead(6)
    assert (head.in_features, head.out_features) == (6, 1)
    x = torch.randn(4, 6)
    want = x @ head.weight.T + head.bias
    torch.testing.assert_close(head(x), want)
    with tracing_for_compile():
        torch.testing.assert_close(head(x), want)
        # the compiled form is a multiply and a row sum, not a matrix product
        seen = []
        with _Recorder(seen):
            head(x)
        assert "linear" not in seen and "sum" in seen
    seen = []
    with _Recorder(seen):
        head(x)
    assert "linear" in seen


class _Recorder(torch.overrides.TorchFunctionMode):
    def __init__(self, seen: list):
        super().__init__()
        self.seen = seen

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.seen.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(("shape", "kind"), [
    ((4, 84, 84), "nature_cnn"), ((10, 10, 10), "minatar_cnn"), ((4, 10, 10), "minatar_cnn"),
    ((3, 10, 12), "nature_cnn"), ((17,), "mlp"), ((5, 5), "mlp"),
])
def test_default_encoder(shape, kind):
    assert default_encoder(shape) == kind


def test_make_encoder_builds_each_kind_with_its_options():
    assert isinstance(make_encoder("mlp", (2, 3), hidden=(7,)), MLPEncoder)
    (fc,) = _layers(make_encoder("mlp", (2, 3), hidden=(7,)), nn.Linear)
    assert (fc.in_features, fc.out_features) == (6, 7)
    assert isinstance(make_encoder("nature_cnn", (4, 84, 84)), NatureCNN)
    assert isinstance(make_encoder("impala_cnn", (3, 32, 32)), ImpalaCNN)
    assert isinstance(make_encoder("minatar_cnn", (6, 10, 10)), MinAtarCNN)
    for kind, shape in (("mlp", (5,)), ("nature_cnn", (4, 84, 84)), ("impala_cnn", (3, 32, 32)),
                        ("minatar_cnn", (6, 10, 10))):
        enc = make_encoder(kind, shape, activation="gelu", norm="layer")
        assert _layers(enc, nn.GELU) and not _layers(enc, nn.ReLU), kind
        assert _layers(enc, nn.LayerNorm), kind


@pytest.mark.parametrize(("args", "message"), [
    (("mlp", (3,), "swish"), "unknown activation 'swish'; valid: relu, leaky_relu, tanh, gelu, adalin, crelu"),
    (("mlp", (3,), "relu", "batch"), "unknown norm 'batch'; valid: none, layer"),
    (("nature_cnn", (8,)), "encoder 'nature_cnn' needs image observations (C, H, W), got shape (8,); use mlp"),
    (("impala_cnn", (2, 8)), "encoder 'impala_cnn' needs image observations (C, H, W), got shape (2, 8); use mlp"),
    (("minatar_cnn", (100,)), "encoder 'minatar_cnn' needs grid observations (C, H, W), got shape (100,)"),
    (("resnet", (3, 8, 8)), "unknown encoder 'resnet'; valid: mlp, nature_cnn, impala_cnn, minatar_cnn"),
])
def test_make_encoder_refuses_bad_values_naming_them(args, message):
    with pytest.raises(ValueError) as err:
        make_encoder(*args)
    assert str(err.value) == message


def test_impala_cnn_options_reach_every_residual_block():
    from plasticity.adalin import AdaLin

    enc = ImpalaCNN((3, 16, 16), activation="adalin", norm="layer")
    blocks = _layers(enc, ResidualBlock)
    assert all(isinstance(b.norm0, nn.GroupNorm) and isinstance(b.norm1, nn.GroupNorm) for b in blocks)
    assert len(_layers(enc, nn.GroupNorm)) == 12 and len(_layers(enc, nn.LayerNorm)) == 1
    # 2 per residual block, the one before the flatten and the one after the linear layer
    assert len(_layers(enc, AdaLin)) == 6 * 2 + 2
    assert enc(torch.zeros(2, 3, 16, 16, dtype=torch.uint8)).shape == (2, 256)
