"""What every pyrnn module shares: a validated Spec and the packed C++ network, which holds
the one copy of the weight matrices; PyTorch-named weights are read back from it on demand."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from . import _core
from ._arrays import as_parameter
from ._spec import Spec
from ._weights import SCALE_SUFFIX, checked_matrix

if TYPE_CHECKING:
    from .stream import Stream


def _writable(array: np.ndarray) -> np.ndarray:
    """A fresh array that only we reference, made writable for the caller."""
    array.flags.writeable = True
    return array


class IncompatibleKeys(NamedTuple):
    """What load_state_dict(strict=False) skipped, as in torch.nn.Module."""

    missing_keys: list[str]
    unexpected_keys: list[str]


_CLASSES: dict[str, type[Module]] = {}


def checked_keys(
    spec: Spec, state_dict: Mapping[str, Any], strict: bool, owner: object
) -> IncompatibleKeys:
    """What `state_dict` lacks and has beyond `spec`'s weights, from its keys alone (refused
    when strict and they differ, or when an int8 scale comes without its weight)."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"state_dict: expected a mapping of key -> array, got {type(state_dict).__name__}"
        )
    shapes = spec.parameter_shapes()
    matrices = set(spec.matrix_keys()) if spec.weight_dtype == "int8" else set()
    scale_of = {key + SCALE_SUFFIX: key for key in matrices}
    missing = [key for key in shapes if key not in state_dict]
    unexpected = [key for key in state_dict if key not in shapes and key not in scale_of]
    if strict and (missing or unexpected):
        found = [f"missing keys {missing}"] if missing else []
        found += [f"unexpected keys {unexpected}"] if unexpected else []
        raise ValueError(
            f"state_dict: {' and '.join(found)} for {owner!r}; expected exactly {list(shapes)}"
            + (" (int8 weights with their '<key>_scale')" if scale_of else "")
        )
    for scale, key in scale_of.items():
        if scale in state_dict and key not in state_dict:
            raise ValueError(
                f"state_dict[{scale!r}]: a scale without its int8 weight {key!r}; give both"
            )
    return IncompatibleKeys(missing, unexpected)


def checked_weight(
    spec: Spec, state_dict: Mapping[str, Any], key: str, shape: tuple[int, ...], is_matrix: bool
) -> dict[str, np.ndarray]:
    """Weight `key` of `state_dict` checked against `shape`: float32, or for a quantised spec a
    matrix in the storage dtype of spec.weight_dtype (given so, or float32 values quantised
    here), an int8 one followed by its '<key>_scale'. A matrix may be a view of the caller's
    array (it is packed at once, never kept); every vector is a private read-only copy."""
    if is_matrix and spec.weight_dtype != "fp32":
        return checked_matrix(state_dict, key, shape, spec.weight_dtype, copy=False)
    return {key: as_parameter(state_dict[key], key, shape, copy=not is_matrix)}


class _Weights(Mapping[str, np.ndarray]):
    """A module's weights by PyTorch key, in torch's order (each int8 scale right after its
    weight). The packed network holds the one copy of every matrix: reading one unpacks it
    into a fresh read-only array (a permutation, bit-exact). The vectors (biases, which the
    network holds folded, and int8 scales) are small and kept as they are."""

    def __init__(
        self,
        network: Any,
        order: list[str],
        matrices: dict[str, tuple[int, str]],
        vectors: dict[str, np.ndarray],
    ) -> None:
        self.network = network
        self._order = order
        self._matrices = matrices  # key -> (layer-major entry, role)
        self._vectors = vectors

    def __getitem__(self, key: str) -> np.ndarray:
        vector = self._vectors.get(key)
        if vector is not None:
            return vector
        entry, role = self._matrices[key]
        array: np.ndarray = self.network.unpack(entry, role)
        array.flags.writeable = False
        return array

    def __contains__(self, key: object) -> bool:
        return key in self._vectors or key in self._matrices

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)


# fetch(key, shape, is_matrix) -> weight `key` (and an int8 matrix's scale), as checked_weight
# gives it.
_Fetch = Callable[[str, tuple[int, ...], bool], dict[str, np.ndarray]]


def _pack(spec: Spec, fetch: _Fetch) -> _Weights:
    """The network of `spec`, packed one weight at a time: fetch gives each weight in turn,
    and each matrix is packed and let go before the next is fetched, so that the
    PyTorch-layout matrices never all exist beside the packed ones."""
    builder = _core.NetworkBuilder(*spec.core_network, spec.weight_dtype)
    matrices: dict[str, tuple[int, str]] = {}
    vectors: dict[str, np.ndarray] = {}
    biases: list[tuple[np.ndarray | None, np.ndarray | None]] = []
    # Torch's key order, which _setup's random draws follow too.
    for entry, group in enumerate(spec.parameter_groups()):
        for role, (key, shape) in group.items():
            arrays = fetch(key, shape, role.startswith("w_"))
            if role.startswith("w_"):
                scale = arrays.get(key + SCALE_SUFFIX)
                builder.pack(entry, role, arrays[key], scale)
                matrices[key] = (entry, role)
                if scale is not None:
                    vectors[key + SCALE_SUFFIX] = scale
            else:
                vectors[key] = arrays[key]
            del arrays
        b_ih, b_hh = (vectors[group[r][0]] if r in group else None for r in ("b_ih", "b_hh"))
        biases.append((b_ih, b_hh))
    for array in vectors.values():
        array.flags.writeable = False
    order = [
        k
        for key in spec.parameter_shapes()
        for k in (key, key + SCALE_SUFFIX)
        if k in matrices or k in vectors
    ]
    return _Weights(builder.build(biases), order, matrices, vectors)


_CoreWeights = tuple[
    np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None
]
_CoreScales = tuple[np.ndarray, np.ndarray, np.ndarray | None]


def _core_weights(spec: Spec, parameters: Mapping[str, np.ndarray]) -> list[_CoreWeights]:
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


def _core_scales(spec: Spec, parameters: Mapping[str, np.ndarray]) -> list[_CoreScales] | None:
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
    _parameters: _Weights
    _network: Any

    def _setup(self, spec: Spec, seed: int | None) -> None:
        self._spec = spec
        # PyTorch's reset_parameters: every weight and bias uniform in +-1/sqrt(hidden_size),
        # drawn in torch's key order, each packed before the next is drawn.
        bound = 1.0 / np.sqrt(spec.hidden_size)
        rng = np.random.default_rng(seed)

        def draw(key: str, shape: tuple[int, ...], is_matrix: bool) -> dict[str, np.ndarray]:
            return {key: rng.uniform(-bound, bound, size=shape).astype(np.float32)}

        self._adopt(_pack(spec, draw))

    def _load(
        self,
        spec: Spec,
        state_dict: Mapping[str, Any],
        strict: bool,
        owner: object,
        current: Mapping[str, np.ndarray] | None = None,
    ) -> IncompatibleKeys:
        """Packs `state_dict` (keys absent from it taken from `current`) into a new network,
        reading each weight only when it is packed; adopted only once all of it is."""
        skipped = checked_keys(spec, state_dict, strict, owner)

        def fetch(key: str, shape: tuple[int, ...], is_matrix: bool) -> dict[str, np.ndarray]:
            if key in state_dict:
                return checked_weight(spec, state_dict, key, shape, is_matrix)
            assert current is not None  # strict loads have every key
            scale = key + SCALE_SUFFIX
            return {k: current[k] for k in (key, scale) if k in current}

        weights = _pack(spec, fetch)
        self._spec = spec
        self._adopt(weights)
        return skipped

    def _adopt(self, weights: _Weights) -> None:
        self._parameters = weights
        self._network = weights.network

    # -- public API shared by all modules -----------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments and the module kind, as stored in pyrnn files."""
        return self._spec.to_config()

    def __getattr__(self, name: str) -> np.ndarray:
        # weight_ih_l0 & co., read-only, as attributes like torch.nn modules have them; a
        # matrix is unpacked from the network into a fresh array on each access.
        parameters: _Weights | None = self.__dict__.get("_parameters")
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
        weights = self._parameters
        # Matrices are unpacked into fresh arrays already: only the kept vectors are copied.
        return {
            key: array.copy() if key in weights._vectors else _writable(array)
            for key, array in weights.items()
        }

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True
    ) -> IncompatibleKeys:
        """Loads weights by PyTorch key names. Shapes must always match; with strict=True the keys
        must match exactly. Nothing changes unless every check passes. A quantised module takes
        its matrices as state_dict() gives them (int8 with their '<key>_scale') or as floats,
        which it quantises to its weight_dtype."""
        return self._load(self._spec, state_dict, strict, self, self._parameters)

    @classmethod
    def _from_state_dict(cls, spec: Spec, state_dict: Mapping[str, Any]) -> Module:
        """A module of `spec` holding exactly `state_dict` (strict), without random init."""
        module = _CLASSES[spec.kind].__new__(_CLASSES[spec.kind])
        module._load(spec, state_dict, True, spec.kind)
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
        return {"config": self.config, "parameters": dict(self._parameters)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        spec = Spec.from_config(state["config"])
        self._load(spec, state["parameters"], True, spec.kind)
