"""MTCNN's three networks (Zhang et al. 2016) as ONNX models, converted from the `mtcnn` package's weights.

The `mtcnn` wheel ships the weights of its Keras networks as joblib files (`mtcnn/assets/weights/
{pnet,rnet,onet}.lz4`), read here by joblib_arrays (numpy arrays only, never unpickled); its networks need
TensorFlow, which facewire neither installs nor imports. Each network is rebuilt as an ONNX graph:

- P-Net, fully convolutional: "image" (N, H, W, 3) float32 RGB pixels -> "boxes" (N, 4, h, w) and
  "scores" (N, h, w), one 12x12 window every 2 px;
- R-Net: "image" (N, 24, 24, 3) -> "boxes" (N, 4), "scores" (N,);
- O-Net: "image" (N, 48, 48, 3) -> "boxes" (N, 4), "landmarks" (N, 10), "scores" (N,).

Pixels are normalised in the graph ((pixel - 127.5) / 128, as the package does, folded into the first
convolution); "scores" is the
softmax's face probability; "boxes" are offsets (x1, y1, x2, y2) in window widths; landmarks are five x
then five y, as fractions of the window (eyes, nose, mouth corners, left to right in the image).

The models are built on first use and cached under $XDG_CACHE_HOME/facewire, named after the
weights' SHA-256 and CONVERTER_VERSION, so a new package or converter makes new files.

    python -m facewire.faces.mtcnn_model     # convert now and print where the models are
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np

from facewire.faces.joblib_arrays import read_arrays
from facewire.faces.model_files import cache_dir, write_atomically

PACKAGE = "mtcnn"
NETWORKS = ("pnet", "rnet", "onet")
CONVERTER_VERSION = "4"
"""Bumped whenever the graphs built here change, so cached models are rebuilt."""
OPSET = 17
PIXEL_MEAN, PIXEL_SCALE = 127.5, 128.0
"""The networks read (pixel - PIXEL_MEAN) / PIXEL_SCALE."""
INPUT_SIZES = {"pnet": None, "rnet": 24, "onet": 48}
"""The side of each network's square input (None: any size)."""

Weights = list[np.ndarray]


def weights_file(network: str) -> Path:
    """The installed mtcnn package's weights file for `network`, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"the {PACKAGE} package is not installed: pip install -r requirements.txt")
    return Path(spec.origin).parent / "assets" / "weights" / f"{network}.lz4"


def cached_models() -> dict[str, Path]:
    """The three ONNX models, converted now if this version of the weights and converter has none yet."""
    paths = {}
    for network in NETWORKS:
        source = weights_file(network)
        digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
        path = cache_dir() / f"mtcnn-{network}-{digest}-c{CONVERTER_VERSION}.onnx"
        if not path.is_file():
            write_atomically(path, build(network, read_arrays(source)).SerializeToString())
        paths[network] = path
    return paths


def build(network: str, weights: Weights):  # -> onnx.ModelProto
    """The ONNX model of `network` ("pnet", "rnet" or "onet") with the package's `weights`, in their order."""
    from onnx import TensorProto, checker, helper  # noqa: PLC0415 - conversion only

    from facewire.faces.onnx_model import Graph  # noqa: PLC0415

    g = Graph()
    x = g.op("Transpose", ["image"], "nchw", perm=[0, 3, 1, 2])
    layers = _Layers(g, list(weights))
    outputs = {"pnet": _pnet, "rnet": _rnet, "onet": _onet}[network](layers, x)
    if layers.weights:
        raise ValueError(f"{network}: {len(layers.weights)} weight arrays left over")
    side = INPUT_SIZES[network]
    dims = ["N", "H", "W", 3] if side is None else ["N", side, side, 3]
    outs = []
    for name, (tensor, shape) in outputs.items():
        g.nodes.append(helper.make_node("Identity", [tensor], [name], name=name))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    graph = helper.make_graph(g.nodes, f"mtcnn_{network}",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, dims)], outs, g.initializers)
    opset = helper.make_opsetid("", OPSET)
    model = helper.make_model(graph, opset_imports=[opset], producer_name="facewire",
                              ir_version=helper.find_min_ir_version_for([opset]))
    checker.check_model(model)
    return model


class _Layers:
    """Keras layers appended to a graph, each taking its arrays from the front of the weight list."""

    def __init__(self, g, weights: Weights) -> None:
        self.g, self.weights = g, weights

    def take(self, *shapes: tuple[int, ...]) -> list[np.ndarray]:
        arrays = [self.weights.pop(0) for _ in shapes]
        for array, shape in zip(arrays, shapes):
            if array.ndim != len(shape) or any(s not in (-1, n) for s, n in zip(shape, array.shape)):
                raise ValueError(f"weights of shape {array.shape} where {shape} was expected")
        return [a.astype(np.float32) for a in arrays]

    def conv(self, x: str, size: int, pixels: bool = False) -> str:
        """Conv2D, padding "valid", stride 1: Keras kernel (kh, kw, in, out) -> ONNX (out, in, kh, kw).
        `pixels`: the input is raw pixel values, normalised as (x - PIXEL_MEAN) / PIXEL_SCALE by the
        convolution's own weights and bias (exact, as no window reaches outside the input)."""
        kernel, bias = self.take((size, size, -1, -1), (-1,))
        if pixels:
            bias = bias - PIXEL_MEAN / PIXEL_SCALE * kernel.sum(axis=(0, 1, 2))
            kernel = kernel / PIXEL_SCALE
        return self.g.op("Conv", [x, self.g.const(kernel.transpose(3, 2, 0, 1), "w"), self.g.const(bias, "b")],
                         "conv", kernel_shape=[size, size])

    def prelu(self, x: str, spatial: bool = True) -> str:
        """PReLU, slope per channel (shared over rows and columns) or, after a dense layer, per unit."""
        (alpha,) = self.take((1, 1, -1) if spatial else (-1,))
        alpha = alpha.reshape(-1)
        if not spatial:
            negative = self.g.op("Min", [x, self.g.const(np.zeros(1, np.float32), "zero")], "negative")
            return self.g.op("Add", [self.g.op("Relu", [x], "relu"),
                                     self.g.op("Mul", [negative, self.g.const(alpha, "alpha")], "slope")], "prelu")
        # slope * x + (1 - slope) * relu(x), each product a BatchNormalization: ONNX Runtime keeps all of it in
        # its blocked (NCHWc) layout, where its PRelu would leave that layout and run several times slower
        return self.g.op("Add", [self._scaled(x, alpha), self._scaled(self.g.op("Relu", [x], "relu"), 1 - alpha)],
                         "prelu")

    def _scaled(self, x: str, scale: np.ndarray) -> str:
        zeros, ones = np.zeros_like(scale), np.ones_like(scale)
        inputs = [x, *(self.g.const(a.astype(np.float32), "bn") for a in (scale, zeros, zeros, ones))]
        return self.g.op("BatchNormalization", inputs, "scaled", epsilon=0.0)

    def pool(self, x: str, size: int, same: bool) -> str:
        """MaxPooling2D, stride 2; Keras's "same" pads at the end, as ONNX's SAME_UPPER."""
        extra = {"auto_pad": "SAME_UPPER"} if same else {}
        return self.g.op("MaxPool", [x], "pool", kernel_shape=[size, size], strides=[2, 2], **extra)

    def flatten(self, x: str) -> str:
        """Keras's Permute((2, 1, 3)) then Flatten: (N, C, H, W) read in (W, H, C) order."""
        return self.g.op("Flatten", [self.g.op("Transpose", [x], "whc", perm=[0, 3, 2, 1])], "flat", axis=1)

    def dense(self, x: str) -> str:
        kernel, bias = self.take((-1, -1), (-1,))
        return self.g.op("Add", [self.g.op("MatMul", [x, self.g.const(kernel, "fc_w")], "fc"),
                                 self.g.const(bias, "fc_b")], "fc_bias")

    def face_probability(self, x: str, dense: bool) -> str:
        """The softmax's face class of a two-class layer, as sigmoid(face logit - other logit): one output, not two.
        (N, h, w) after P-Net's 1x1 convolution, (N,) after a dense layer."""
        if dense:
            kernel, bias = self.take((-1, 2), (2,))
            logit = self.g.op("Add", [self.g.op("MatMul", [x, self.g.const(kernel[:, 1:] - kernel[:, :1], "fc_w")],
                                                "fc"), self.g.const(bias[1:] - bias[:1], "fc_b")], "fc_bias")
        else:
            kernel, bias = self.take((1, 1, -1, 2), (2,))
            weights = (kernel[..., 1:] - kernel[..., :1]).transpose(3, 2, 0, 1)
            logit = self.g.op("Conv", [x, self.g.const(weights, "w"), self.g.const(bias[1:] - bias[:1], "b")], "conv",
                              kernel_shape=[1, 1])
        axes = self.g.const(np.array([1], np.int64), "axis")
        return self.g.op("Squeeze", [self.g.op("Sigmoid", [logit], "sigmoid"), axes], "face_prob")


def _pnet(n: _Layers, x: str) -> dict[str, tuple[str, list]]:
    x = n.pool(n.prelu(n.conv(x, 3, pixels=True)), 2, same=True)
    x = n.prelu(n.conv(n.prelu(n.conv(x, 3)), 3))
    boxes = n.conv(x, 1)
    scores = n.face_probability(x, dense=False)
    return {"boxes": (boxes, ["N", 4, "h", "w"]), "scores": (scores, ["N", "h", "w"])}


def _rnet(n: _Layers, x: str) -> dict[str, tuple[str, list]]:
    x = n.pool(n.prelu(n.conv(x, 3, pixels=True)), 3, same=True)
    x = n.pool(n.prelu(n.conv(x, 3)), 3, same=False)
    x = n.prelu(n.dense(n.flatten(n.prelu(n.conv(x, 2)))), spatial=False)
    boxes = n.dense(x)
    scores = n.face_probability(x, dense=True)
    return {"boxes": (boxes, ["N", 4]), "scores": (scores, ["N"])}


def _onet(n: _Layers, x: str) -> dict[str, tuple[str, list]]:
    x = n.pool(n.prelu(n.conv(x, 3, pixels=True)), 3, same=True)
    x = n.pool(n.prelu(n.conv(x, 3)), 3, same=False)
    x = n.pool(n.prelu(n.conv(x, 3)), 2, same=True)
    x = n.prelu(n.dense(n.flatten(n.prelu(n.conv(x, 2)))), spatial=False)
    boxes, landmarks = n.dense(x), n.dense(x)
    scores = n.face_probability(x, dense=True)
    return {"boxes": (boxes, ["N", 4]), "landmarks": (landmarks, ["N", 10]), "scores": (scores, ["N"])}


if __name__ == "__main__":
    for name, model_path in cached_models().items():
        print(f"{name}: {model_path}")
