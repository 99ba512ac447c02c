"""Streaming converted torch models frame by frame: every causal model family of
tests/test_capture.py, stepped one frame at a time and fed in uneven chunks, gives the frames of
one forward over the whole sequence (outputs without a time axis: the forward over the frames so
far); models that need future frames refuse to stream, naming the op."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from test_capture import ConvFrontEnd, LanguageModel, ResidualGRUs, SpeakerEncoder
from torch import nn

import pyrnn

# Step, feed and forward run the same kernels; only how the sequence is cut differs, which the
# recurrent core shows to change no arithmetic. The graph around it may group rows differently
# (one frame against T frames per GEMM call), so allow float rounding, not more.
ATOL = RTOL = 1e-6
CHUNKS = (7, 1, 13)  # feed cuts: uneven, then the rest


def convert(model: nn.Module, example: torch.Tensor) -> pyrnn.Model:
    torch.manual_seed(0)
    converted = pyrnn.from_torch(model.eval(), example)
    assert isinstance(converted, pyrnn.Model)
    return converted


def frames_of(x: np.ndarray, axis: int) -> list[np.ndarray]:
    return [np.ascontiguousarray(np.take(x, t, axis=axis)) for t in range(x.shape[axis])]


def assert_close(got: np.ndarray, want: np.ndarray, where: str) -> None:
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=where)


def check_streams_like_forward(model: pyrnn.Model, x: np.ndarray, output_axis: int) -> None:
    """One output with a time axis (at `output_axis`): stepped frames and fed chunks give the
    forward's frames, however many a strided or delayed window holds back."""
    stream = model.stream(batch=x.shape[0])
    (time_axis,) = stream.time_axes
    full = model(x)
    stepped = [stream.step(frame) for frame in frames_of(x, time_axis)]
    emitted = [frame for frame in stepped if frame is not None]
    assert len(emitted) > 0
    got = np.stack(emitted, axis=output_axis)
    count = got.shape[output_axis]
    assert_close(got, np.take(full, range(count), axis=output_axis), "steps")

    stream.reset()
    parts, start = [], 0
    for size in (*CHUNKS, x.shape[time_axis] - sum(CHUNKS)):
        chunk = np.take(x, range(start, start + size), axis=time_axis)
        parts.append(stream.feed(chunk))
        start += size
    fed = np.concatenate(parts, axis=output_axis)
    np.testing.assert_array_equal(fed, got)


def test_language_model_streams_token_by_token(isa: str) -> None:
    model = convert(LanguageModel(), torch.randint(0, 50, (4, 160)))
    tokens = np.random.default_rng(0).integers(0, 50, (3, 40))
    check_streams_like_forward(model, tokens, output_axis=1)
    # One unbatched stream: frames without the batch axis.
    single = model.stream()
    full = model(tokens[:1])
    for t in range(5):
        assert_close(single.step(tokens[0, t : t + 1].reshape(())), full[0, t], f"frame {t}")


def test_residual_grus_with_layer_norm_stream(isa: str) -> None:
    model = convert(ResidualGRUs(), torch.randn(4, 160, 16))
    x = np.random.default_rng(1).standard_normal((2, 40, 16)).astype(np.float32)
    check_streams_like_forward(model, x, output_axis=1)


class Wrapped(nn.Module):
    """A bare LSTM converts to pyrnn.LSTM; wrapped, it is a one-op graph."""

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.lstm = lstm

    def forward(self, x: torch.Tensor) -> Any:
        return self.lstm(x)


@pytest.mark.parametrize("batch_first", [True, False])
def test_batch_first_and_time_first_stream(batch_first: bool) -> None:
    lstm = Wrapped(nn.LSTM(6, 8, num_layers=2, batch_first=batch_first, proj_size=3))
    example = torch.randn(4, 160, 6) if batch_first else torch.randn(160, 4, 6)
    model = convert(lstm, example)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 30, 6) if batch_first else (30, 2, 6)).astype(np.float32)
    stream = model.stream(batch=2)
    assert stream.time_axes == [1 if batch_first else 0]
    out, (h_n, c_n) = model(x)
    time = 1 if batch_first else 0
    steps = [stream.step(frame) for frame in frames_of(x, time)]
    assert_close(np.stack([s[0] for s in steps], axis=time), out, "outputs")
    # h_n and c_n have no time axis: after each frame they hold the state so far.
    assert_close(steps[-1][1][0], h_n, "h_n")
    assert_close(steps[-1][1][1], c_n, "c_n")
    # A feed of no frames has no frames to give, and no state to report.
    empty = np.zeros((2, 0, 6) if batch_first else (0, 2, 6), np.float32)
    out_empty, state = stream.feed(empty)
    assert out_empty.shape == ((2, 0, 3) if batch_first else (0, 2, 3)) and state == (None, None)


def test_speaker_embedding_is_the_forward_over_the_frames_so_far(isa: str) -> None:
    model = convert(SpeakerEncoder(), torch.randn(4, 160, 40))
    lines = repr(model).splitlines()
    assert lines[:4] == [
        "Model(",
        "  (input x): float32[*, *, 40]",
        "  (lstm): lstm(40, 32, num_layers=3, batch_first=True)",
        "  select(dim=0, index=2)",
    ]
    assert "  (fc): linear(32, 16)" in lines
    x = np.random.default_rng(3).standard_normal((2, 25, 40)).astype(np.float32)
    stream = model.stream(batch=2)
    for t, frame in enumerate(frames_of(x, 1)):
        embedding, by_norm = stream.step(frame)
        if t in (0, 9, 24):
            want, want_norm = model(x[:, : t + 1])
            assert_close(embedding, want, f"after {t + 1} frames")
            assert_close(by_norm, want_norm, f"after {t + 1} frames")


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
def test_conv_front_end_streams_with_its_delay_and_stride(
    isa: str, conv: nn.Conv1d, pool: nn.Module
) -> None:
    torch.manual_seed(4)
    model = convert(ConvFrontEnd(conv, pool), torch.randn(4, 8, 160))
    x = np.random.default_rng(4).standard_normal((2, 8, 48)).astype(np.float32)
    # The head's final transpose puts time on axis 2 of the output.
    check_streams_like_forward(model, x, output_axis=2)


def test_a_stream_of_a_converted_model_forks_pickles_and_resets_rows() -> None:
    model = convert(LanguageModel(), torch.randint(0, 50, (4, 160)))
    tokens = np.random.default_rng(5).integers(0, 50, (3, 12))
    stream = model.stream(batch=3)
    for t in range(6):
        stream.step(tokens[:, t])
    fork, restored = stream.clone(), pickle.loads(pickle.dumps(stream))
    rest = [stream.step(tokens[:, t]) for t in range(6, 12)]
    for other in (fork, restored):
        np.testing.assert_array_equal(
            np.stack([other.step(tokens[:, t]) for t in range(6, 12)]), np.stack(rest)
        )
    # A reset row starts over: row 1 after reset equals a fresh stream on that row's tokens.
    stream.reset(1)
    fresh = model.stream(batch=1)
    for t in range(4):
        assert_close(stream.step(tokens[:, t])[1], fresh.step(tokens[1:2, t])[0], f"row 1, {t}")


class LastStep(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(5, 7, batch_first=True)
        self.head = nn.Linear(7, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(x)[0][:, -1])


class MeanOverTime(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(5, 7, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0].mean(dim=1)


class Bidirectional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(5, 7, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]


class SoftmaxOverTime(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(5, 7, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.gru(x)[0], dim=1)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (Bidirectional, r"\(rnn; lstm \(torch.nn.LSTM\).*bidirectional layer reads the sequence"),
        (LastStep, r"\(select.*select picks one step of the time axis"),
        (MeanOverTime, r"\(mean.*over the time axis needs every frame"),
        (SoftmaxOverTime, r"\(softmax.*along the time axis needs every frame"),
    ],
)
def test_models_that_need_future_frames_refuse_to_stream_naming_the_op(
    model: Callable[[], nn.Module], message: str
) -> None:
    converted = convert(model(), torch.randn(4, 160, 5))
    with pytest.raises(ValueError, match=r"this model cannot stream: node \d+ " + message):
        converted.stream(batch=2)
    # It still runs whole sequences.
    x = np.random.default_rng(6).standard_normal((2, 9, 5)).astype(np.float32)
    assert converted(x).shape[0] == 2


class StatefulHead(nn.Module):
    """A module that takes and returns its LSTM's state: forward(x, h0, c0) -> (y, hn, cn)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 6, num_layers=2, batch_first=True)
        self.fc = nn.Linear(6, 2)

    def forward(
        self, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y, (h, c) = self.lstm(x, (h0, c0))
        return self.fc(y), h, c


def test_state_inputs_of_a_converted_module_are_the_stream_state() -> None:
    torch.manual_seed(0)
    module = StatefulHead().eval()
    x, h0, c0 = torch.randn(2, 9, 3), torch.randn(2, 2, 6), torch.randn(2, 2, 6)
    model = pyrnn.from_torch(module, x, h0, c0)
    with torch.no_grad():
        want = [t.numpy() for t in module(x, h0, c0)]
    stream = model.stream(batch=2)
    assert sorted(stream.state) == ["c0", "h0"]
    stream.state = {"h0": h0.numpy(), "c0": c0.numpy()}
    for t in range(9):
        y, h, c = stream.step(x[:, t].numpy())
        assert_close(y, want[0][:, t], f"step {t}")
    assert_close(h, want[1], "h_n")
    assert_close(c, want[2], "c_n")
    assert_close(stream.state["c0"], want[2], "state c0")


def test_uninitialised_model_streams_graphs_and_builders_raise_instead_of_crashing() -> None:
    """__new__ without __init__ must give TypeError from every method, never a segfault."""
    from pyrnn import _core

    class Projected(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp, self.gru = nn.Linear(3, 4), nn.GRU(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.gru(self.inp(x))[0]

    model = convert(Projected(), torch.zeros(5, 1, 3))
    x = np.zeros(3, np.float32)
    for stream in (
        pyrnn.ModelStream.__new__(pyrnn.ModelStream),
        _core.ModelStream.__new__(_core.ModelStream),
    ):
        calls = [
            lambda s=stream: s.step(x),
            lambda s=stream: s.feed(x[None]),
            lambda s=stream: s._reset(),
            lambda s=stream: s.rows,
            lambda s=stream: _core.ModelStream(s),
        ]
        for call in calls:
            with pytest.raises(TypeError, match="ModelStream was never initialised"):
                call()
    working = model.stream()
    assert working.step(np.zeros((1, 3), np.float32)) is not None
    graph = _core.Graph.__new__(_core.Graph)
    with pytest.raises(TypeError, match="Graph was never initialised"):
        _ = graph.cached_plans
    with pytest.raises(TypeError, match="Graph was never initialised"):
        _core.ModelStream(graph, {"tensor": 0}, 1, False, None, 64)
    builder = _core.NetworkBuilder.__new__(_core.NetworkBuilder)
    with pytest.raises(TypeError, match="NetworkBuilder was never initialised"):
        builder.build([])


def test_masked_arrays_are_refused_by_model_streams_and_calls() -> None:
    """A numpy masked array's mask would be ignored: refused as a float frame, an index frame
    and an output, as pyrnn.Stream refuses it, instead of read in place."""
    model = convert(ResidualGRUs(), torch.randn(4, 160, 16))
    stream = model.stream()
    frame = np.ones(16, np.float32)
    masked = np.ma.masked_array(frame, mask=np.arange(16) % 2 == 0)
    with pytest.raises(TypeError, match="masked array, whose mask would be ignored"):
        stream.step(masked)
    with pytest.raises(TypeError, match="masked array, whose mask would be ignored"):
        stream.feed(masked[None])
    out = np.ma.masked_array(np.empty_like(stream.step(frame)), mask=False)
    with pytest.raises(TypeError, match=r"^out: .*masked array, whose mask would be ignored"):
        stream.step(frame, out=out)
    words = convert(LanguageModel(), torch.randint(0, 50, (4, 160)))
    tokens = np.ma.masked_array(np.zeros((1, 3), np.int64), mask=[[False, True, False]])
    with pytest.raises(TypeError, match="masked array, whose mask would be ignored"):
        words(tokens)
    index = np.ma.masked_array(np.array(3, np.int64), mask=True)
    with pytest.raises(TypeError, match="masked array, whose mask would be ignored"):
        words.stream().step(index)
    with pytest.raises(TypeError, match="masked array, whose mask would be ignored"):
        words.stream(batch=1).feed(tokens)
