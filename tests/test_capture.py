"""Capturing torch models as pyrnn graphs: each model is captured from one example, then its graph
runs on the reference interpreter (tests/graph_reference.py) and as a pyrnn.Model in the C++ core
(on every ISA) for other batch sizes and step counts, and both must match the torch module.
Refusals name the op, the module path and the source line."""

from __future__ import annotations

import collections
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from graph_reference import KERNELS, run_graph
from torch import nn

import pyrnn
from pyrnn.capture_torch import capture
from pyrnn.graph import OPS, ConversionError, Graph

# float32 throughout; the graph and torch run the same kernels here, so differences are rounding.
ATOL, RTOL = 1e-5, 1e-5
SIZES = [(1, 1), (3, 57), (1, 57), (3, 1)]  # (batch, steps) other than the example's (4, 160)

Inputs = Callable[[int, int], tuple[torch.Tensor, ...]]


def features(width: int, batch_first: bool = True) -> Inputs:
    def make(batch: int, steps: int) -> tuple[torch.Tensor, ...]:
        shape = (batch, steps, width) if batch_first else (steps, batch, width)
        return (torch.randn(*shape),)

    return make


def assert_same(got: Any, want: Any, where: str = "output") -> None:
    """Same structure (namedtuples as tuples), same dtypes and shapes, values within tolerance."""
    if isinstance(want, torch.Tensor):
        assert isinstance(got, np.ndarray), f"{where}: expected an array, got {type(got)}"
        expected = want.detach().numpy()
        assert got.dtype == expected.dtype and got.shape == expected.shape, (
            f"{where}: {got.dtype} {got.shape} != {expected.dtype} {expected.shape}"
        )
        bound = ATOL + RTOL * np.abs(expected)
        assert np.all(np.abs(got - expected) <= bound), (
            f"{where}: max error {np.max(np.abs(got - expected))}"
        )
    elif want is None:
        assert got is None, where
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), where
        for key in want:
            assert_same(got[key], want[key], f"{where}[{key!r}]")
    else:
        assert isinstance(want, tuple | list), where
        assert type(got) is (list if isinstance(want, list) else tuple), f"{where}: {type(got)}"
        assert len(got) == len(want), where
        for index, (part, expected) in enumerate(zip(got, want, strict=True)):
            assert_same(part, expected, f"{where}[{index}]")


def convert(model: nn.Module, example: tuple[torch.Tensor, ...]) -> Any:
    """capture(), and the graph survives its JSON round trip unchanged."""
    graph, constants = capture(model, example)
    assert Graph.from_json(json.loads(json.dumps(graph.to_json()))) == graph
    return graph, constants


def check(
    model: nn.Module,
    make: Inputs,
    sizes: list[tuple[int, int]] = SIZES,
    example: tuple[int, int] = (4, 160),
) -> Graph:
    """Captures `model` from an example of `example` sizes; checks the graph against torch for
    each of `sizes`, the JSON round trip, and that the model was left as it was."""
    model.eval()
    before = copy.deepcopy(model.state_dict())
    graph, constants = convert(model, make(*example))
    assert not model.training
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[key], before[key]) for key in before)

    assert list(constants) == graph.constants
    for name, array in constants.items():
        assert array.dtype in (np.float32, np.int64), name
        assert array.flags["C_CONTIGUOUS"], name

    # The graph on the reference interpreter, and as a pyrnn.Model on every ISA's kernels.
    converted = pyrnn.Model(graph, constants)
    previous = pyrnn.active_isa()
    try:
        for batch, steps in sizes:
            inputs = make(batch, steps)
            with torch.no_grad():
                want = model(*inputs)
            arrays = [x.numpy() for x in inputs]
            assert_same(run_graph(graph, constants, arrays), want, f"batch {batch} steps {steps}")
            for isa in pyrnn.available_isas():
                pyrnn.set_isa(isa)
                assert_same(converted(*arrays), want, f"{isa}: batch {batch} steps {steps}")
    finally:
        pyrnn.set_isa(previous)
    return graph


def ops(graph: Graph) -> list[str]:
    return [node.op for node in graph.nodes]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# -- model families -----------------------------------------------------------------------------
class SpeakerEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(40, 32, num_layers=3, batch_first=True)
        self.fc = nn.Linear(32, 16)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, (h, _) = self.lstm(x)
        embedding = F.relu(self.fc(h[-1]))
        by_norm = embedding / torch.norm(embedding, dim=1, keepdim=True)
        return F.normalize(embedding, dim=1), by_norm


def test_speaker_encoder() -> None:
    graph = check(SpeakerEncoder(), features(40))
    assert graph.inputs[0].shape == [None, None, 40]
    rnn = next(node for node in graph.nodes if node.op == "rnn")
    # nn.LSTM's own zero state becomes "no state"; the stack stays one op.
    assert rnn.inputs[1:3] == [None, None]
    assert rnn.attrs == {
        "mode": "lstm",
        "num_layers": 3,
        "bidirectional": False,
        "batch_first": True,
        "has_biases": True,
    }
    assert rnn.source.startswith("lstm (torch.nn.LSTM), test_capture.py:")


class BiGRUClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(20, 24, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(48, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out[:, -1])


def test_bidirectional_gru_classifier_on_last_step() -> None:
    check(BiGRUClassifier(), features(20))


class LanguageModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.lstm = nn.LSTM(16, 32, batch_first=True)
        self.out = nn.Linear(32, 50)
        self.log_softmax = nn.LogSoftmax(dim=-1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(self.embed(tokens))
        return self.log_softmax(self.out(hidden))


def test_language_model_on_token_ids() -> None:
    graph = check(LanguageModel(), lambda n, t: (torch.randint(0, 50, (n, t)),))
    assert graph.inputs[0].dtype == "int64"
    assert graph.inputs[0].shape == [None, None]


def test_int32_token_ids_become_an_int64_input() -> None:
    graph, _ = convert(LanguageModel().eval(), (torch.randint(0, 50, (4, 9), dtype=torch.int32),))
    assert graph.inputs[0].dtype == "int64"


class ConvFrontEnd(nn.Module):
    def __init__(self, conv: nn.Conv1d, pool: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.pool = pool
        self.proj = nn.Linear(conv.out_channels, 12)
        self.lstm = nn.LSTM(12, 16, batch_first=True)
        self.head = nn.Linear(16, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(F.relu(self.conv(x)))
        y, _ = self.lstm(self.proj(y.transpose(1, 2)))
        return self.head(y).transpose(1, 2)


@pytest.mark.parametrize(
    ("conv", "pool"),
    [
        (nn.Conv1d(8, 10, 3, padding=1), nn.MaxPool1d(2)),
        (nn.Conv1d(8, 10, 4, padding="same", dilation=2), nn.MaxPool1d(3, 2, 1, ceil_mode=True)),
        (nn.Conv1d(8, 10, 3, stride=2, groups=2, bias=False), nn.AvgPool1d(3, 1, 1)),
        (
            nn.Conv1d(8, 10, 5, padding="valid"),
            nn.AvgPool1d(2, ceil_mode=True, count_include_pad=False),
        ),
    ],
    ids=["padding", "same-dilated", "strided-grouped", "valid"],
)
def test_conv_front_end(conv: nn.Conv1d, pool: nn.Module) -> None:
    def make(batch: int, steps: int) -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, 8, steps),)

    graph = check(ConvFrontEnd(conv, pool), make, [(1, 57), (3, 23), (2, 16)])
    assert graph.inputs[0].shape == [None, 8, None]


def test_conv_same_padding_splits_like_torch() -> None:
    conv = nn.Conv1d(2, 2, 4, padding="same", dilation=3)
    graph, _ = convert(conv.eval(), (torch.randn(2, 2, 30),))
    (node,) = graph.nodes
    assert node.attrs["padding"] == [4, 5]  # total 3 * (4 - 1) = 9, left 9 // 2


def test_a_convolution_bounds_the_steps_it_needs() -> None:
    conv = nn.Conv1d(3, 4, 5).eval()
    graph, constants = convert(conv, (torch.randn(2, 3, 40),))
    assert graph.inputs[0].ranges == [(2, 5, None)]
    with pytest.raises(ValueError, match="dim 2 must be in"):
        run_graph(graph, constants, [np.zeros((2, 3, 4), np.float32)])


class AttentionPooling(nn.Module):
    """Conv + BatchNorm + ReLU + Dropout front end, a bidirectional GRU, attention pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.front = nn.Sequential(
            nn.Conv1d(5, 8, 3, padding=1),
            nn.BatchNorm1d(8),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
        )
        self.gru = nn.GRU(8, 6, batch_first=True, bidirectional=True)
        self.score = nn.Linear(12, 1)
        self.out = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq, _ = self.gru(self.front(x).transpose(1, 2))
        weights = torch.softmax(self.score(seq).squeeze(-1), dim=1)
        pooled = (seq * weights.unsqueeze(-1)).sum(dim=1)
        return self.out(pooled)


def test_attention_pooling_over_a_conv_front_end() -> None:
    check(AttentionPooling(), lambda n, t: (torch.randn(n, 5, t),))


class ResidualGRUs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.GRU(16, 16, batch_first=True)
        self.norm = nn.LayerNorm(16)
        self.second = nn.GRU(16, 16, batch_first=True)
        self.final_norm = nn.LayerNorm(16, elementwise_affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.first(x)
        x = self.norm(x + y)
        y, _ = self.second(x)
        return self.final_norm(y + x)


def test_layer_norm_and_residual_adds_between_grus() -> None:
    check(ResidualGRUs(), features(16))


def test_lstm_with_projections() -> None:
    model = nn.LSTM(10, 16, num_layers=2, proj_size=6, bidirectional=True, batch_first=True)
    graph = check(model, features(10))
    (rnn,) = (node for node in graph.nodes if node.op == "rnn")
    assert len(rnn.inputs) == 3 + 2 * 2 * 5  # x, h0, c0, then w_ih, w_hh, b_ih, b_hh, w_hr


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_batch_first_and_time_first(cls: type[nn.Module], batch_first: bool) -> None:
    model = cls(6, 8, num_layers=2, batch_first=batch_first)
    check(model, features(6, batch_first))


class ExplicitState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(6, 8, num_layers=2)

    def forward(self, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor) -> Any:
        out, (h, c) = self.lstm(x, (h0, c0))
        return out, h, c


def test_explicit_initial_state_inputs() -> None:
    def make(batch: int, steps: int) -> tuple[torch.Tensor, ...]:
        return torch.randn(steps, batch, 6), torch.randn(2, batch, 8), torch.randn(2, batch, 8)

    graph = check(ExplicitState(), make)
    assert [spec.shape for spec in graph.inputs] == [[None, None, 6], [2, None, 8], [2, None, 8]]
    rnn = next(node for node in graph.nodes if node.op == "rnn")
    assert rnn.inputs[:3] == ["x", "h0", "c0"]


class BufferState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(6, 8, batch_first=True)
        self.register_buffer("h0", torch.randn(1, 1, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = self.h0.expand(-1, x.shape[0], -1).contiguous()
        return self.gru(x, h0)[0]


def test_registered_buffer_initial_state() -> None:
    graph = check(BufferState(), features(6))
    assert "h0" in graph.constants


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_plain_rnn(nonlinearity: str) -> None:
    model = nn.RNN(6, 8, num_layers=2, nonlinearity=nonlinearity, bias=False, batch_first=True)
    graph = check(model, features(6))
    assert next(n for n in graph.nodes if n.op == "rnn").attrs["mode"] == f"rnn_{nonlinearity}"


class Cells(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTMCell(6, 8)
        self.gru = nn.GRUCell(8, 8, bias=False)
        self.tanh = nn.RNNCell(8, 8)
        self.relu = nn.RNNCell(8, 8, nonlinearity="relu")

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h1, c1 = self.lstm(x, (h, h))
        h2, c2 = self.lstm(x)  # zero state
        g = self.gru(h1, h2)
        return c1, c2, self.tanh(g, c1), self.relu(g)


def test_the_three_cells_in_a_model() -> None:
    def make(batch: int, steps: int) -> tuple[torch.Tensor, ...]:
        return torch.randn(batch, 6), torch.randn(batch, 8)

    graph = check(Cells(), make)
    modes = [node.attrs["mode"] for node in graph.nodes if node.op == "rnn_cell"]
    assert sorted(modes) == ["gru", "lstm", "lstm", "rnn_relu", "rnn_tanh"]
    assert all(len(node.inputs) == 7 for node in graph.nodes if node.op == "rnn_cell")


class Normed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.flat = nn.BatchNorm1d(6)
        self.seq = nn.BatchNorm1d(6, affine=False)
        for norm in (self.flat, self.seq):
            norm.running_mean.uniform_(-1, 1)
            norm.running_var.uniform_(0.5, 2)
        nn.init.uniform_(self.flat.weight)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.flat(x[:, :, 0]), self.seq(x)


def test_batch_norm_on_vectors_and_sequences() -> None:
    check(Normed(), lambda n, t: (torch.randn(n, 6, t),), [(3, 57), (2, 1)])


class Activations(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.modules_ = nn.ModuleList(
            [
                nn.ReLU(),
                nn.LeakyReLU(0.2),
                nn.GELU(),
                nn.GELU(approximate="tanh"),
                nn.ELU(0.7),
                nn.SELU(),
                nn.CELU(1.3),
                nn.SiLU(),
                nn.Tanh(),
                nn.Sigmoid(),
                nn.Hardtanh(-0.5, 0.8),
                nn.ReLU6(),
                nn.Softplus(2.0, 5.0),
                nn.Softmax(dim=1),
                nn.LogSoftmax(dim=-1),
            ]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = 3 * x
        outs = [module(x) for module in self.modules_]
        positive = x.abs() + 0.5
        outs += [
            torch.exp(x / 4),
            torch.log(positive),
            torch.sqrt(positive),
            torch.rsqrt(positive),
            -x,
            x.clamp(-1, 2),
            x.clamp(min=0.3),
            x.clamp(max=-0.3),
            F.softmax(x, dim=0),
            F.log_softmax(x, dim=2),
        ]
        return outs


def test_every_activation() -> None:
    check(Activations(), features(7), [(3, 5), (1, 1)])


class Reductions(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs: list[torch.Tensor] = [x.sum(), x.mean(), x.amax(), x.max(), x.min()]
        for keepdim in (False, True):
            outs += [
                x.sum(1, keepdim=keepdim),
                x.sum((0, 2), keepdim=keepdim),
                x.mean(-1, keepdim=keepdim),
                x.amax((1, 2), keepdim=keepdim),
                x.max(dim=1, keepdim=keepdim).values,
                x.min(dim=2, keepdim=keepdim)[0],
                torch.norm(x, dim=2, keepdim=keepdim),
                x.norm(p=1, dim=(1, 2), keepdim=keepdim),
                torch.linalg.vector_norm(x, float("inf"), dim=1, keepdim=keepdim),
                torch.linalg.vector_norm(x, 3, dim=-1, keepdim=keepdim),
            ]
        outs.append(torch.norm(x))
        return tuple(outs)


def test_reductions_over_axes() -> None:
    check(Reductions(), features(5), [(3, 57), (1, 1)])


class Shapes(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n, t, f = x.shape
        first, second = x.split(3, dim=2)
        head, tail = x.chunk(2, dim=2)
        return (
            torch.cat([x, x * 2], dim=1),
            torch.cat([x, -x], dim=-1),
            torch.stack([x, x + 1], dim=0),
            torch.stack([x, x + 1], dim=-1),
            x[:, 0],
            x[:, -1],
            x[..., 2],
            x[:, 1:],
            x[:, :-1],
            x[..., 1:5:2],
            x[:, ::2],
            x[:, t - 1],  # an index computed from a size
            x[:, :1].squeeze(1),
            x[:, :1].squeeze(),
            x[:, :1, :1].squeeze((1, 2)),
            x[0].t(),
            x.unsqueeze(0),
            x.unsqueeze(-1),
            x[:, None],
            x.flatten(1),
            x.flatten(),
            x.permute(2, 0, 1),
            x.transpose(1, 2),
            x.mT,
            x.reshape(n * t, f),
            x.view(n, -1),
            x.reshape(-1, 2, f // 2)[0],
            x.narrow(2, 1, 3),
            x.narrow(2, -2, 2),
            first + second.sum(-1, keepdim=True),
            head * tail,
            x.unbind(2)[3],
            x[:, :, :1].expand(n, t, 4),
            torch.zeros(n, 3) + x[:, 0, :3],
            torch.ones(t // 2 + 1, 2),
            x.sum(1) / t,  # a size as a tensor operand
            torch.ones_like(x) * 2 + x.new_full((1, t, 1), 0.5),
        )


def test_shape_operations() -> None:
    check(Shapes(), features(6), [(3, 57), (1, 1), (3, 2)])


class PassThrough(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.5)
        self.dropout1d = nn.Dropout1d(0.5)
        self.identity = nn.Identity()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (
            self.dropout(x),
            self.dropout1d(x),
            self.identity(x),
            F.dropout(x, 0.3, training=False),
            x.clone(),
            x.detach(),
            x.transpose(1, 2).contiguous(),
            x.float(),
            x.type_as(x),
        )


def test_inference_identities_vanish() -> None:
    graph = check(PassThrough(), features(3), [(3, 5)])
    assert ops(graph) == ["permute"]


class Norms(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (
            torch.norm(x, p="fro", dim=(1, 2)),
            torch.linalg.norm(x, dim=-1),
            torch.linalg.norm(x),
            x.norm(0, dim=1),
            torch.linalg.vector_norm(x, float("-inf"), dim=(0, 2), keepdim=True),
        )


def test_norm_variants() -> None:
    check(Norms(), features(5), [(3, 57), (1, 1)])


def test_unbatched_sequence() -> None:
    check(nn.GRU(6, 5), lambda n, t: (torch.randn(t, 6),), [(1, 57), (1, 1)])


class TokenArithmetic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 3, padding_idx=0)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embed(tokens * 2 + 1 - tokens)


def test_int64_arithmetic_on_indices() -> None:
    graph = check(TokenArithmetic(), lambda n, t: (torch.randint(0, 40, (n, t)),))
    scalars = [node for node in graph.nodes if node.op in ("add", "sub", "mul")]
    assert len(scalars) == 3


class Constants(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tensor([1.0, 2.0, 3.0]) + torch.tensor(0.5)


def test_tensors_built_in_forward_are_anonymous_constants() -> None:
    graph = check(Constants(), lambda n, t: (torch.randn(n, 3),))
    assert graph.constants == ["_const0", "_const1"]


class Positional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(200, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table[: x.shape[1]]


def test_a_table_bounds_the_steps() -> None:
    graph = check(Positional(), features(6))
    assert graph.inputs[0].ranges == [(1, 0, 200)]


class Broadcasting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.randn(5))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        positive = x.abs() + 1
        return (
            x + 1,
            2 - x,
            x * 3,
            x / 4,
            1 / positive,
            1.5 + x,
            x - 0.5,
            torch.add(x, x * 2, alpha=2),
            torch.sub(x, self.scale, alpha=3),
            torch.rsub(x, 1.5),
            x * self.scale,
            self.scale / positive,
            x[:, :1] - x,
            x.pow(2) + positive**0.5 + positive**-1 + positive**-0.5,
            torch.div(x, 2.0, rounding_mode=None),
        )


def test_broadcasting_with_scalars_on_both_sides() -> None:
    check(Broadcasting(), features(5), [(3, 57), (1, 1)])


Pair = collections.namedtuple("Pair", "first second")


class Structured(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 6, batch_first=True)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        out, (h, c) = self.lstm(x)
        return {"out": out, "state": [h, (c, None)], "pair": Pair(h[0], c[0]), "none": None}


def test_dict_list_tuple_output_structure() -> None:
    graph = check(Structured(), features(4))
    assert list(graph.outputs) == ["dict"]
    assert [key for key, _ in graph.outputs["dict"]] == ["out", "state", "pair", "none"]


class Mappings(nn.Module):
    def forward(self, x: torch.Tensor) -> Any:
        ordered = collections.OrderedDict([("b", x * 2), ("a", x)])
        return collections.defaultdict(list, {"ordered": ordered, "plain": {"y": x + 1}})


def test_ordered_and_default_dicts_are_dicts() -> None:
    graph = check(Mappings(), features(3), [(2, 3)])
    assert graph.outputs["dict"][0][1] == {
        "dict": [["b", {"tensor": "mul"}], ["a", {"tensor": "x"}]]
    }


class InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        y += 1
        return self.act(y) * 2


def test_in_place_ops_on_fresh_results() -> None:
    graph = check(InPlace(), features(4), [(3, 5)])
    assert "relu" in ops(graph)


class InPlaceOnInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(x))


def test_in_place_op_on_an_input_leaves_the_callers_tensor_alone() -> None:
    model = InPlaceOnInput().eval()
    graph, constants = convert(model, (torch.randn(2, 5, 4),))
    x = torch.randn(3, 7, 4)
    given = x.numpy().copy()
    got = run_graph(graph, constants, [given])
    assert np.array_equal(given, x.numpy())
    with torch.no_grad():
        assert_same(got, model(x))


class WeightPreprocessing(nn.Module):
    """Weights computed in forward from weights alone: weight norm (both APIs), a scaled table."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(4, 6, 3, padding=1))
        self.embed = nn.Embedding(10, 6)
        self.gain = nn.Parameter(torch.randn(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).transpose(1, 2)
        return F.linear(y * F.softplus(self.gain), self.embed.weight * 0.5)


def test_weights_computed_from_weights_are_folded() -> None:
    graph = check(WeightPreprocessing(), lambda n, t: (torch.randn(n, 4, t),), [(3, 57), (1, 1)])
    assert ops(graph) == ["conv1d", "permute", "mul", "linear"]
    assert graph.constants == ["conv.bias", "_const0", "_const1", "_const2"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_weights_of_other_float_dtypes_are_converted_at_float32(dtype: torch.dtype) -> None:
    model = SpeakerEncoder().to(dtype).eval()
    graph, constants = convert(model, (torch.randn(4, 20, 40),))
    assert all(p.dtype == dtype for p in model.parameters())  # the user's model as it was
    assert all(array.dtype == np.float32 for array in constants.values())
    x = torch.randn(3, 9, 40)
    with torch.no_grad():
        want = copy.deepcopy(model).float()(x)
    assert_same(run_graph(graph, constants, [x.numpy()]), want)


def test_capture_leaves_torch_as_it_was() -> None:
    ops_ = [torch.ops.aten.lstm.input, torch.ops.aten.gru.input, torch.ops.aten.max_pool1d.default]
    before = [dict(op.py_kernels) for op in ops_]
    convert(SpeakerEncoder().eval(), (torch.randn(2, 5, 40),))
    for failing in (WithCumsum(), Branching()):  # refused after, and during, the export
        with pytest.raises(ConversionError):
            capture(failing.eval(), (torch.randn(2, 5, 4),))
    assert [dict(op.py_kernels) for op in ops_] == before


def test_the_reference_runs_every_op() -> None:
    assert set(KERNELS) == set(OPS)


def test_an_example_dim_of_size_one_is_fixed() -> None:
    graph, _ = convert(nn.GRU(4, 5, batch_first=True).eval(), (torch.randn(1, 9, 4),))
    assert graph.inputs[0].shape == [1, None, 4]


# -- refusals -----------------------------------------------------------------------------------
class Head(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(x, dim=1)  # the line the refusal names


class WithCumsum(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 4, batch_first=True)
        self.head = Head()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0])


def _line_of(text: str) -> int:
    source = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(source, 1) if text in line)


def test_unsupported_op_is_refused_with_op_module_and_line() -> None:
    line = _line_of("return torch.cumsum(x, dim=1)")
    with pytest.raises(ConversionError) as caught:
        capture(WithCumsum().eval(), (torch.randn(2, 5, 4),))
    message = str(caught.value)
    assert "aten.cumsum" in message
    assert "head (Head)" in message
    assert f"test_capture.py:{line}" in message


class Branching(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x


def test_data_dependent_control_flow_is_refused() -> None:
    line = _line_of("if x.sum() > 0:")
    with pytest.raises(ConversionError, match="branches on tensor values") as caught:
        capture(Branching().eval(), (torch.randn(2, 3),))
    assert f"test_capture.py:{line}" in str(caught.value)


def test_training_mode_is_refused() -> None:
    model = SpeakerEncoder()
    with pytest.raises(ConversionError, match=r"training mode: call model\.eval\(\)"):
        capture(model, (torch.randn(2, 5, 40),))
    model.eval()
    model.fc.train()
    with pytest.raises(ConversionError, match="module 'fc'"):
        capture(model, (torch.randn(2, 5, 40),))


class AlwaysDropout(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, 0.5)  # training=True whatever the module's mode


def test_functional_dropout_in_training_mode_is_refused() -> None:
    with pytest.raises(ConversionError, match=r"aten\.dropout\.default with train=True"):
        capture(AlwaysDropout().eval(), (torch.randn(2, 3),))


@pytest.mark.parametrize(
    ("example", "match"),
    [
        (
            torch.randn(2, 5, 40, dtype=torch.float64),
            r"example_inputs\[0\]: expected float32, got torch\.float64",
        ),
        (torch.randn(2, 5, 40, dtype=torch.float16), "expected float32"),
        (torch.zeros(2, 5, 40, dtype=torch.bool), "expected a float32 tensor"),
        (torch.zeros(2, 5, 40, dtype=torch.complex64), "expected a float32 tensor"),
    ],
    ids=["float64", "float16", "bool", "complex"],
)
def test_example_dtypes_other_than_float32_or_indices_are_refused(
    example: torch.Tensor, match: str
) -> None:
    with pytest.raises(ConversionError, match=match):
        capture(SpeakerEncoder().eval(), (example,))


def test_non_tensor_arguments_are_refused() -> None:
    with pytest.raises(
        ConversionError, match=r"example_inputs\[1\]: expected a torch\.Tensor, got int"
    ):
        capture(SpeakerEncoder().eval(), (torch.randn(2, 5, 40), 3))
    with pytest.raises(TypeError, match=r"module: expected a torch\.nn\.Module"):
        capture(lambda x: x, (torch.randn(2),))


class Stateful(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.add_(1)
        return x * 2


def test_a_model_on_the_meta_device_is_refused() -> None:
    with pytest.raises(ConversionError, match=r"lstm\.weight_ih_l0 is on device 'meta'"):
        capture(SpeakerEncoder().to("meta").eval(), (torch.randn(2, 5, 40),))


class Unsupported(nn.Module):
    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *inputs: torch.Tensor) -> Any:
        return self.fn(*inputs)


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (lambda x: x * x.max().item(), r"aten\.item\.default is not supported"),
        (lambda x: x.long(), r"aten\.to\.dtype converts torch\.float32 to torch\.int64"),
        (
            lambda x: x + torch.ones(8, dtype=torch.int64),
            r"aten\.add\.Tensor mixes int64 and float32",
        ),
        (lambda x: torch.sort(x)[0], r"aten\.sort\.default is not supported"),
        (lambda x: torch.fft.rfft(x).real, r"aten\.fft_rfft\.default is not supported"),
        (
            lambda x: F.max_pool1d(x, 2, return_indices=True)[1],
            r"uses output 1 of aten\.max_pool1d_with_indices",
        ),
        (lambda x: x.div(2, rounding_mode="floor"), "rounding_mode='floor'"),
        (lambda x: x.pow(3), r"aten\.pow\.Tensor_Scalar with exponent 3"),
    ],
    ids=["item", "cast", "mixed-dtypes", "sort", "fft", "pool-indices", "floor-div", "cube"],
)
def test_operations_the_graph_cannot_express_are_refused(
    fn: Callable[..., Any], match: str
) -> None:
    with pytest.raises(ConversionError, match=match):
        capture(Unsupported(fn).eval(), (torch.randn(2, 3, 8),))


class Packed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True)
        return self.gru(packed)[1]


def test_packed_sequences_are_refused() -> None:
    with pytest.raises(ConversionError, match="packed sequences"):
        capture(Packed().eval(), (torch.randn(3, 5, 3), torch.tensor([5, 4, 2])))


def test_writing_a_buffer_is_refused() -> None:
    with pytest.raises(ConversionError, match=r"writes to calls in place \(aten\.add_\.Tensor\)"):
        capture(Stateful().eval(), (torch.randn(2, 3),))


class ViewThenInPlace(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * 2
        first = y[:, 0]
        y.add_(1)
        return first  # torch returns the changed values through the view


def test_in_place_change_seen_through_a_view_is_refused() -> None:
    with pytest.raises(ConversionError, match=r"aten\.add_\.Tensor modifies a tensor in place"):
        capture(ViewThenInPlace().eval(), (torch.randn(2, 3),))
