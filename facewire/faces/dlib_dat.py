"""Read dlib's DNN model files (.dat) into numpy arrays and typed layer records.

dlib serialises a network from the outside in: the loss layer's version, then one
version number per wrapper (layer, tag, skip), then the input layer, and only then
each layer's own data from the innermost (next to the input) to the outermost. Tags,
skips and add_prev write no type of their own, so a file can only be read against the
network's declared architecture: a tuple of slot names, outermost first, such as
FACE_RECOGNITION_NET ("con", "affine", "relu", "max_pool", "avg_pool", "fc",
"add_prev1", "tag1", "skip2", ...). The records come back in data-flow order (the
layer next to the input first).

Numbers follow dlib's serialize.h: an integer is a control byte (size in the low
nibble, 0x80 for negative) and that many little-endian bytes; a float is an integer
mantissa and an integer exponent; a string is its length then its bytes; a bool is
'0' or '1'; a tensor is version 2, four dimensions and little-endian float32 data.
Nothing here executes anything from the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np


class DatFormatError(ValueError):
    """The file is not a dlib network of the expected architecture, or it is damaged."""


_FLOAT_SPECIAL = {32000: np.inf, 32001: -np.inf, 32002: np.nan}


class _Reader:
    """A cursor over the bytes of a dlib serialisation stream."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.pos = 0
        self.name = name

    def fail(self, what: str) -> DatFormatError:
        return DatFormatError(f"{self.name}: {what} (at byte {self.pos} of {len(self.data)})")

    def take(self, count: int) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise self.fail(f"file ends early: {count} more bytes needed")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def int(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise self.fail(f"not a dlib integer (control byte 0x{control:02x})")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self.fail("floating point number in dlib's old text format, which is not supported")
        mantissa, exponent = self.int(), self.int()
        if exponent in _FLOAT_SPECIAL:
            return float(_FLOAT_SPECIAL[exponent])
        return float(np.ldexp(np.float64(mantissa), exponent))

    def bool(self) -> bool:
        byte = self.take(1)
        if byte not in (b"0", b"1"):
            raise self.fail(f"not a dlib bool: {byte!r}")
        return byte == b"1"

    def string(self, limit: int = 256) -> str:
        size = self.int()
        if not 0 <= size <= limit:
            raise self.fail(f"implausible string length {size}")
        try:
            return self.take(size).decode("ascii")
        except UnicodeDecodeError:
            raise self.fail("string is not ASCII") from None

    def version(self, accepted: tuple[int, ...], what: str) -> int:
        value = self.int()
        if value not in accepted:
            raise self.fail(f"{what}: version {value}, expected one of {accepted}")
        return value

    def shape(self) -> tuple[int, int, int, int]:
        dims = tuple(self.int() for _ in range(4))
        if any(d < 0 for d in dims):
            raise self.fail(f"negative tensor dimension in {dims}")
        return dims  # type: ignore[return-value]

    def tensor(self) -> np.ndarray:
        """A resizable_tensor: its data as float32 in (num_samples, k, nr, nc) order."""
        self.version((2,), "tensor")
        shape = self.shape()
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        """An alias_tensor: only a shape, the view of a slice of a layer's params."""
        self.version((1,), "alias_tensor")
        return self.shape()

    def tag(self, accepted: tuple[str, ...], what: str) -> str:
        name = self.string()
        if name not in accepted:
            raise self.fail(f"expected {what} ({' or '.join(accepted)}), found {name!r}")
        return name


# ---------------------------------------------------------------------------------------
# Layer records


@dataclass(frozen=True)
class InputLayer:
    """input_rgb_image_sized or input_rgb_image_pyramid: pixel -> (pixel - mean) / 256."""

    kind: str
    mean_rgb: tuple[float, float, float]
    size: tuple[int, int] | None = None
    pyramid_padding: tuple[int, int] | None = None


@dataclass(frozen=True)
class Conv:
    """con_: weights (out, in, kh, kw) applied as cross-correlation, then a bias."""

    weights: np.ndarray
    bias: np.ndarray | None
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class Affine:
    """affine_ (batch norm folded): x * gamma + beta, both shaped (k, nr, nc) to broadcast."""

    gamma: np.ndarray
    beta: np.ndarray


@dataclass(frozen=True)
class Relu:
    """relu_."""


@dataclass(frozen=True)
class Pool:
    """max_pool_ or avg_pool_; a window of (0, 0) covers the whole input (avg_pool_everything)."""

    op: str
    window: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class Fc:
    """fc_: flatten (k*nr*nc in NCHW order), times weights (inputs, outputs), plus bias."""

    weights: np.ndarray
    bias: np.ndarray | None


@dataclass(frozen=True)
class Tag:
    """tagN: remember the current tensor as N."""

    id: int


@dataclass(frozen=True)
class Skip:
    """skipN: continue from the tensor remembered as N."""

    id: int


@dataclass(frozen=True)
class AddPrev:
    """add_prevN: current + tensor N, each zero-padded to the larger size in every dimension."""

    tag: int


@dataclass(frozen=True)
class Loss:
    """The loss layer's name and settings (they do not change the network's output)."""

    kind: str
    settings: dict = field(default_factory=dict)


Layer = Union[Conv, Affine, Relu, Pool, Fc, Tag, Skip, AddPrev]


@dataclass(frozen=True)
class DlibNet:
    """A parsed network: input layer, layers in data-flow order, loss."""

    input: InputLayer
    layers: list[Layer]
    loss: Loss


# ---------------------------------------------------------------------------------------
# Architectures (outermost slot first, as in dlib's template types)


_BLOCK = ("affine", "con", "relu", "affine", "con")
"""dlib's `block`: BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,...>>>>> (N and stride are in the file)."""
_ARES = ("relu", "add_prev1", *_BLOCK, "tag1")
"""ares: relu<add_prev1<block<N,1,tag1<...>>>>."""
_ARES_DOWN = ("relu", "add_prev2", "avg_pool", "skip1", "tag2", *_BLOCK, "tag1")
"""ares_down: relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,2,tag1<...>>>>>>>."""

FACE_RECOGNITION_NET: tuple[str, ...] = (
    "fc", "avg_pool",
    *_ARES_DOWN,  # alevel0: 256 filters
    *_ARES, *_ARES, *_ARES_DOWN,  # alevel1: 256
    *_ARES, *_ARES, *_ARES_DOWN,  # alevel2: 128
    *_ARES, *_ARES, *_ARES, *_ARES_DOWN,  # alevel3: 64
    *_ARES, *_ARES, *_ARES,  # alevel4: 32
    "max_pool", "relu", "affine", "con",
)
"""dlib_face_recognition_resnet_model_v1's anet_type (examples/dnn_face_recognition_ex.cpp)."""

MMOD_FACE_DETECTOR_NET: tuple[str, ...] = (
    "con",
    *(["relu", "affine", "con"] * 3),  # rcon5<rcon5<rcon5<...>>>
    *(["relu", "affine", "con"] * 3),  # downsampler
)
"""mmod_human_face_detector's net_type (tools/python/src/cnn_face_detector.cpp)."""

_SLOT = re.compile(r"(con|affine|relu|max_pool|avg_pool|fc|add_prev|tag|skip)(\d*)$")


# ---------------------------------------------------------------------------------------
# Layer details


def _read_con(r: _Reader) -> Conv:
    version = r.tag(("con_4", "con_5", "con_6"), "a con_ layer")
    params = r.tensor().ravel()
    num_filters, rows, cols = r.int(), r.int(), r.int()
    stride = (r.int(), r.int())
    padding = (r.int(), r.int())
    filters = r.alias()
    r.alias()  # biases: (1, num_filters), whether used or not
    for _ in range(4):  # learning-rate and weight-decay multipliers
        r.float()
    use_bias = r.bool() if version in ("con_5", "con_6") else True
    if version == "con_6" and r.bool():
        raise r.fail("con_ with a fused relu is not supported")
    count = int(np.prod(filters))
    if filters[0] != num_filters or filters[2:] != (rows, cols):
        raise r.fail(f"con_ filter shape {filters} does not match {num_filters}x{rows}x{cols}")
    if params.size != count + (num_filters if use_bias else 0):
        raise r.fail(f"con_ has {params.size} parameters for {count} weights and {num_filters} biases")
    bias = params[count:].copy() if use_bias else None
    return Conv(params[:count].reshape(filters).copy(), bias, stride, padding)


def _read_affine(r: _Reader) -> Affine:
    version = r.tag(("affine_", "affine_2", "bn_con2", "bn_fc2"), "an affine_ (or bn_) layer")
    if version.startswith("bn_"):
        return _affine_from_bn(r)
    params = r.tensor().ravel()
    gamma, beta = r.alias(), r.alias()
    r.int()  # mode: CONV_MODE (per channel) or FC_MODE (per element); the shapes say which
    if version == "affine_2" and r.bool():
        raise r.fail("disabled affine_ layers are not supported")
    size = int(np.prod(gamma))
    if gamma != beta or params.size != 2 * size:
        raise r.fail(f"affine_ has {params.size} parameters for gamma {gamma} and beta {beta}")
    return Affine(params[:size].reshape(gamma[1:]).copy(), params[size:].reshape(beta[1:]).copy())


def _affine_from_bn(r: _Reader) -> Affine:
    """A bn_ layer read as dlib reads it into an affine_: its running statistics folded in."""
    params = r.tensor().ravel()
    gamma, beta = r.alias(), r.alias()
    r.tensor()  # means of the last training batch
    r.tensor()  # their inverse standard deviations
    running_means, running_variances = r.tensor().ravel(), r.tensor().ravel()
    r.int()  # num_updates
    r.int()  # running_stats_window_size
    for _ in range(4):
        r.float()
    eps = np.float32(r.float())
    size = int(np.prod(gamma))
    if gamma != beta or params.size != 2 * size or running_means.size != size != running_variances.size:
        raise r.fail(f"bn_ has {params.size} parameters for gamma {gamma} and beta {beta}")
    # dlib computes this in float: g = gamma / sqrt(var + eps); b = beta - g * mean
    scale = params[:size] / np.sqrt(running_variances + eps)
    shift = params[size:] - scale * running_means
    return Affine(scale.reshape(gamma[1:]), shift.reshape(beta[1:]))


def _read_relu(r: _Reader) -> Relu:
    if r.tag(("relu_", "relu_2"), "a relu_ layer") == "relu_2" and r.bool():
        raise r.fail("disabled relu_ layers are not supported")
    return Relu()


def _read_pool(r: _Reader, op: str) -> Pool:
    r.tag((f"{op}_pool_2",), f"a {op}_pool_ layer")
    window = (r.int(), r.int())
    stride = (r.int(), r.int())
    padding = (r.int(), r.int())
    return Pool(op, window, stride, padding)


def _read_fc(r: _Reader) -> Fc:
    version = r.tag(("fc_2", "fc_3"), "an fc_ layer")
    outputs, inputs = r.int(), r.int()
    params = r.tensor().ravel()
    weights = r.alias()
    r.alias()  # biases: (1, outputs), present or not
    has_bias = r.int() == 0  # FC_HAS_BIAS = 0, FC_NO_BIAS = 1
    for _ in range(4):
        r.float()
    if version == "fc_3":
        has_bias = r.bool() and has_bias
    if weights[:2] != (inputs, outputs) or params.size != (inputs + has_bias) * outputs:
        raise r.fail(f"fc_ has {params.size} parameters for {inputs} inputs and {outputs} outputs")
    count = inputs * outputs
    bias = params[count:].copy() if has_bias else None
    return Fc(params[:count].reshape(inputs, outputs).copy(), bias)


def _read_add_prev(r: _Reader, tag: int) -> AddPrev:
    r.tag(("add_prev_",), "an add_prev_ layer")
    return AddPrev(tag)


def _read_details(r: _Reader, slot: str) -> Layer:
    kind, number = _SLOT.match(slot).groups()  # type: ignore[union-attr]
    if kind == "con":
        return _read_con(r)
    if kind == "affine":
        return _read_affine(r)
    if kind == "relu":
        return _read_relu(r)
    if kind in ("max_pool", "avg_pool"):
        return _read_pool(r, kind[:3])
    if kind == "fc":
        return _read_fc(r)
    return _read_add_prev(r, int(number))


def _read_layer_state(r: _Reader, version: int, next_to_input: bool) -> None:
    """Skip add_layer's training state: three bools, then tensors (gradients, cached output)."""
    for _ in range(3):
        r.bool()
    r.tensor()  # x_grad
    r.tensor()  # cached_output
    if next_to_input:
        r.tensor()  # grad_final
        if version >= 3:
            r.int()  # _sample_expansion_factor
    elif version >= 2:
        r.tensor()  # params_grad


def _read_input(r: _Reader) -> InputLayer:
    kind = r.tag(("input_rgb_image_sized", "input_rgb_image_pyramid", "input_rgb_image_pyramid2"),
                 "an RGB input layer")
    mean = (r.float(), r.float(), r.float())
    if kind == "input_rgb_image_sized":
        return InputLayer(kind, mean, size=(r.int(), r.int()))
    padding = (r.int(), r.int()) if kind.endswith("2") else (10, 11)
    return InputLayer("input_rgb_image_pyramid", mean, pyramid_padding=padding)


def _read_loss(r: _Reader) -> Loss:
    r.version((1,), "add_loss_layer")
    kind = r.tag(("loss_metric_", "loss_metric_2", "loss_mmod_"), "a supported loss layer")
    if kind == "loss_metric_2":
        return Loss("loss_metric", {"margin": r.float(), "distance_threshold": r.float()})
    if kind == "loss_metric_":
        return Loss("loss_metric")
    return Loss("loss_mmod", _read_mmod_options(r))


def _read_mmod_options(r: _Reader) -> dict:
    version = r.version((1, 2, 3, 4), "mmod_options")
    if version == 1:
        windows = [(r.int(), r.int(), "")]
    else:
        windows = [_read_detector_window(r) for _ in range(r.int())]
    options = {
        "detector_windows": windows,
        "loss_per_false_alarm": r.float(),
        "loss_per_missed_target": r.float(),
        "truth_match_iou_threshold": r.float(),
        "overlaps_nms": (r.float(), r.float()),
        "overlaps_ignore": (r.float(), r.float()),
    }
    if version >= 3:
        options["assume_image_pyramid"] = r.take(1)[0]
    if version >= 4:
        options["use_bounding_box_regression"] = r.bool()
        options["bbr_lambda"] = r.float()
    return options


def _read_detector_window(r: _Reader) -> tuple[int, int, str]:
    version = r.version((1, 2), "detector_window_details")
    width, height = r.int(), r.int()
    return width, height, r.string() if version == 2 else ""


# ---------------------------------------------------------------------------------------
# Whole files


def parse(data: bytes, architecture: tuple[str, ...], name: str = "<bytes>") -> DlibNet:
    """Parse a serialised network of `architecture` (slot names, outermost first)."""
    _check_architecture(architecture)
    r = _Reader(data, name)
    loss = _read_loss(r)
    versions = [_read_wrapper_version(r, slot, i == len(architecture) - 1)
                for i, slot in enumerate(architecture)]
    net_input = _read_input(r)
    layers: list[Layer] = []
    for depth in range(len(architecture) - 1, -1, -1):
        slot = architecture[depth]
        if slot.startswith(("tag", "skip")):
            number = int(slot[3:] if slot.startswith("tag") else slot[4:])
            layers.append(Tag(number) if slot.startswith("tag") else Skip(number))
            continue
        layers.append(_read_details(r, slot))
        _read_layer_state(r, versions[depth], depth == len(architecture) - 1)
    if r.pos != len(r.data):
        raise r.fail(f"{len(r.data) - r.pos} bytes left over after the network")
    return DlibNet(net_input, layers, loss)


def _check_architecture(architecture: tuple[str, ...]) -> None:
    for slot in architecture:
        match = _SLOT.match(slot)
        if not match or match[1] in ("add_prev", "tag", "skip") and not match[2]:
            raise ValueError(f"unknown architecture slot {slot!r}")
    if not architecture or architecture[-1].startswith(("tag", "skip")):
        raise ValueError("the layer next to the input must be a real layer, not a tag or skip")


def _read_wrapper_version(r: _Reader, slot: str, next_to_input: bool) -> int:
    if slot.startswith(("tag", "skip")):
        return r.version((1,), f"{slot} wrapper")
    if next_to_input:
        return r.version((2, 3), f"{slot} layer next to the input")
    return r.version((1, 2), f"{slot} layer")


def load(path: str | Path, architecture: tuple[str, ...] = FACE_RECOGNITION_NET) -> DlibNet:
    """Read a dlib .dat network file (by default dlib's face recognition ResNet)."""
    path = Path(path)
    return parse(path.read_bytes(), architecture, str(path))
