"""What every pyrnn module shares: a validated Spec, PyTorch-named weights held as read-only
numpy arrays, and the packed C++ network built from them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from . import _core
from ._arrays import as_parameter
from ._spec import Spec
from ._weights import SCALE_SUFFIX, checked_matrix

if TYPE_CHECKING:
    from .stream import Stream


class IncompatibleKeys(NamedTuple):
    """What load_state_dict(strict=False) skipped, as in torch.nn.Module."""

    missing_keys: list[str]
    unexpected_keys: list[str]


_CLASSES: dict[str, type[Module]] = {}


def checked_parameters(
    spec: Spec, state_dict: Mapping[str, Any], strict: bool, owner: object
) -> tuple[dict[str, np.ndarray], IncompatibleKeys]:
    """The weights of `state_dict` that `spec` has, as private read-only arrays after checking
    every shape (and, when strict, that the keys match exactly): float32, or for a quantised
    spec its matrices in the storage dtype of spec.weight_dtype (given so, or float32 values
    quantised here), int8 ones followed by their '<key>_scale'."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"state_dict: expected a mapping of key -> array, got {type(state_dict).__name__}"
        )
    shapes = spec.parameter_shapes()
    dtype = spec.weight_dtype
    matrices = set(spec.matrix_keys()) if dtype != "fp32" else set()
    scale_of = {key + SCALE_SUFFIX: key for key in matrices} if dtype == "int8" else {}
    missing = [key for key in shapes if key not in state_dict]
    unexpected = [key for key in state_dict if key not in shapes and key not in scale_of]
    if strict and (missing or unexpected):
        found = [f"missing keys {missing}"] if missing else []
        found += [f"unexpected keys {unexpected}"] if unexpected else []
        raise ValueError(
            f"state_dict: {' and '.join(found)} for {owner!r}; expected exactly {list(shapes)}"
            + (" (int8 weights with their '<key>_scale')" if scale_of else "")
        )
    parameters: dict[str, np.ndarray] = {}
    for key, shape in shapes.items():
        if key not in state_dict:
            continue
        if key in matrices:
            parameters.update(checked_matrix(state_dict, key, shape, dtype))
        else:
            parameters[key] = as_parameter(state_dict[key], key, shape)
    for scale, key in scale_of.items():
        if scale in state_dict and key not in state_dict:
            raise ValueError(
                f"state_dict[{scale!r}]: a scale without its int8 weight {key!r}; give both"
            )
    return parameters, IncompatibleKeys(missing, unexpected)


_CoreWeights = tuple[
    np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None
]
_CoreScales = tuple[np.ndarray, np.ndarray, np.ndarray | None]


def _core_weights(spec: Spec, parameters: dict[str, np.ndarray]) -> list[_CoreWeights]:
    """Per (layer, direction), layer-major: (w_ih, w_hh, b_ih, b_hh, w_hr) as the core takes
    them, None where the module has no such weight (no bias, no projection)."""

    def optional(group: dict[str, tuple[str, tuple[int, ...]]], role: str) -> np.ndarray | None:
        return parameters[group[role][0]] if role in group else None

    return [
        (
            parameters[group["w_ih"][0]],
            parameters[group["w_hh"][0]],
            optional(group, "b_ih"),
            optional(group, "b_hh"),
            optional(group, "w_hr"),
        )
        for group in spec.parameter_groups()
    ]


def _core_scales(spec: Spec, parameters: dict[str, np.ndarray]) -> list[_CoreScales] | None:
    """int8 only: per (layer, direction), (s_ih, s_hh, s_hr) as the core takes them."""
    if spec.weight_dtype != "int8":
        return None

    def scale(group: dict[str, tuple[str, tuple[int, ...]]], role: str) -> np.ndarray:
        return parameters[group[role][0] + SCALE_SUFFIX]

    return [
        (
            scale(group, "w_ih"),
            scale(group, "w_hh"),
            scale(group, "w_hr") if "w_hr" in group else None,
        )
        for group in spec.parameter_groups()
    ]


class Module:
    """Base of the six module types. Subclasses set _kind and define __init__ and forward."""

    _kind: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_kind" in cls.__dict__:
            _CLASSES[cls._kind] = cls

    _spec: Spec
    _parameters: dict[str, np.ndarray]
    _network: Any

    def _setup(self, spec: Spec, seed: int | None) -> None:
        self._spec = spec
        # PyTorch's reset_parameters: every weight and bias uniform in +-1/sqrt(hidden_size).
        bound = 1.0 / np.sqrt(spec.hidden_size)
        rng = np.random.default_rng(seed)
        parameters = {
            key: rng.uniform(-bound, bound, size=shape).astype(np.float32)
            for key, shape in spec.parameter_shapes().items()
        }
        self._install(parameters)

    def _install(self, parameters: dict[str, np.ndarray]) -> None:
        """Adopts checked parameters and packs them for the core (all or nothing)."""
        for array in parameters.values():
            array.flags.writeable = False
        spec = self._spec
        # Kept in torch's key order, each int8 scale right after its weight.
        order = [k for key in spec.parameter_shapes() for k in (key, key + SCALE_SUFFIX)]
        parameters = {key: parameters[key] for key in order if key in parameters}
        weights = _core_weights(spec, parameters)
        network = _core.Network(
            spec.core_kind,
            spec.input_size,
            spec.hidden_size,
            spec.num_layers,
            spec.bidirectional,
            spec.proj_size,
            weights,
            spec.weight_dtype,
            _core_scales(spec, parameters),
        )
        self._parameters = parameters
        self._network = network

    def _reference_forward(
        self, x: np.ndarray, h0: np.ndarray | None = None, c0: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The readable double-precision C++ oracle on this module's weights, for tests and
        verification: x (T, N, I), h0 (L*D, N, P), c0 (L*D, N, H) -> (out, hn, cn)."""
        spec = self._spec
        return _core.reference_forward(
            spec.core_kind,
            spec.input_size,
            spec.hidden_size,
            spec.num_layers,
            spec.bidirectional,
            spec.proj_size,
            _core_weights(spec, self._parameters),
            np.ascontiguousarray(x, dtype=np.float32),
            h0,
            c0,
            spec.weight_dtype,
            _core_scales(spec, self._parameters),
        )

    # -- public API shared by all modules -----------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments and the module kind, as stored in pyrnn files."""
        return self._spec.to_config()

    def __getattr__(self, name: str) -> np.ndarray:
        # weight_ih_l0 & co., read-only, as attributes like torch.nn modules have them.
        parameters: dict[str, np.ndarray] | None = self.__dict__.get("_parameters")
        if parameters is not None and name in parameters:
            return parameters[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def weight_dtype(self) -> str:
        """How the weight matrices are stored: 'fp32', or 'fp16', 'bf16', 'int8' for a model
        made by pyrnn.quantize (biases are float32 in every case)."""
        return self._spec.weight_dtype

    def state_dict(self) -> dict[str, np.ndarray]:
        """PyTorch key -> a fresh, writable copy of the weight: float32, or for a quantised
        module its matrices as stored (float16; uint16 holding bfloat16 bits; int8, each
        followed by '<key>_scale', its float32 scale per row)."""
        return {key: array.copy() for key, array in self._parameters.items()}

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True
    ) -> IncompatibleKeys:
        """Loads weights by PyTorch key names. Shapes must always match; with strict=True the keys
        must match exactly. Nothing changes unless every check passes. A quantised module takes
        its matrices as state_dict() gives them (int8 with their '<key>_scale') or as floats,
        which it quantises to its weight_dtype."""
        parameters, skipped = checked_parameters(self._spec, state_dict, strict, self)
        self._install({**self._parameters, **parameters})
        return skipped

    @classmethod
    def _from_state_dict(cls, spec: Spec, state_dict: Mapping[str, Any]) -> Module:
        """A module of `spec` holding exactly `state_dict` (strict), without random init."""
        module = _CLASSES[spec.kind].__new__(_CLASSES[spec.kind])
        module._spec = spec
        parameters, _ = checked_parameters(spec, state_dict, True, spec.kind)
        module._install(parameters)
        return module

    def stream(self, batch: int | None = None) -> Stream:
        """A stream carrying this module's state across calls: ``step`` one time step or
        ``feed`` a chunk at a time (see pyrnn.Stream). ``batch=None`` takes unbatched inputs;
        ``batch=N`` advances N independent sequences per call. Bidirectional modules cannot
        stream (ValueError)."""
        from .stream import Stream

        return Stream(self, batch)

    def forward(self, input: Any, hx: Any = None) -> Any:
        """Overridden by each module type (torch.nn's call and shapes)."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def __repr__(self) -> str:
        spec = self._spec
        defaults = Spec(spec.kind, spec.input_size, spec.hidden_size)
        extras = [
            f"{key}={value!r}"
            for key, value in spec.to_config().items()
            if key not in ("kind", "input_size", "hidden_size", "weight_dtype")
            and getattr(defaults, key) != value
        ]
        arguments = [str(spec.input_size), str(spec.hidden_size), *extras]
        text = f"{type(self).__name__}({', '.join(arguments)})"
        if spec.weight_dtype != "fp32":  # not a constructor argument: made by quantize
            text = f"pyrnn.quantize({text}, weights={spec.weight_dtype!r})"
        return text

    # -- pickling and copying: config + weights; the packed network is rebuilt -----------------
    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "parameters": self._parameters}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._spec = Spec.from_config(state["config"])
        parameters, _ = checked_parameters(self._spec, state["parameters"], True, self._spec.kind)
        self._install(parameters)
