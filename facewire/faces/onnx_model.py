"""Convert dlib's face recognition ResNet (.dat) to an equivalent ONNX model.

The model takes what dlib.get_face_chip cuts, a batch of 150x150 RGB chips as uint8
(N, 150, 150, 3), and normalises them in the graph exactly as dlib's input layer does
((pixel - channel mean) / 256, in float32, NCHW). Its output "descriptors" (N, 128)
float32 is what dlib's network returns before face_recognition widens it to float64.

Converted files are cached under $XDG_CACHE_HOME/facewire (~/.cache/facewire) and
carry the SHA-256 of the .dat they came from and CONVERTER_VERSION in their metadata,
so that model_files.cached_model rebuilds them when either changes.

    python -m facewire.faces.onnx_model [--dat PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper, numpy_helper

from facewire.faces.dlib_dat import AddPrev, Affine, Conv, DlibNet, Fc, Layer, Pool, Relu, Skip, Tag, load
from facewire.faces.model_files import (
    CONVERTER_VERSION,
    INPUT_NAME,
    OUTPUT_NAME,
    default_dat,
    default_onnx_path,
    write_atomically,
)

OPSET = 17
SOURCE_SHA256_KEY = "facewire.source_sha256"
CONVERTER_KEY = "facewire.converter_version"

Shape = tuple[int, "int | None", "int | None"]
"""(channels, rows, columns) of one sample; rows and columns are None where the input size is free."""


class Graph:
    """Nodes and constant tensors of an ONNX graph under construction."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []

    def const(self, array: np.ndarray, hint: str) -> str:
        name = f"{hint}_{len(self.initializers)}"
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, **attributes) -> str:
        name = f"{hint}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attributes))
        return name


def _conv_shape(shape: Shape, window: tuple[int, int], stride: tuple[int, int],
                padding: tuple[int, int], channels: int) -> Shape:
    """dlib's (and ONNX's) output size: 1 + (n + 2 * padding - window) // stride."""
    rows, cols = (None if n is None else 1 + (n + 2 * p - w) // s
                  for n, w, s, p in zip(shape[1:], window, stride, padding))
    return channels, rows, cols


def _add_conv(g: Graph, x: str, shape: Shape, layer: Conv) -> tuple[str, Shape]:
    py, px = layer.padding
    inputs = [x, g.const(layer.weights, "w")]
    if layer.bias is not None:
        inputs.append(g.const(layer.bias, "b"))
    out = g.op("Conv", inputs, "conv", kernel_shape=list(layer.weights.shape[2:]),
               strides=list(layer.stride), pads=[py, px, py, px])
    return out, _conv_shape(shape, layer.weights.shape[2:], layer.stride, layer.padding,
                            layer.weights.shape[0])


def _add_pool(g: Graph, x: str, shape: Shape, layer: Pool) -> tuple[str, Shape]:
    if layer.window == (0, 0):
        if layer.op != "avg":
            raise ValueError("only average pooling over the whole input is supported")
        return g.op("GlobalAveragePool", [x], "gap"), (shape[0], 1, 1)
    py, px = layer.padding
    # dlib pools over the part of each window that lies inside the input (no padded zeros)
    extra = {"count_include_pad": 0} if layer.op == "avg" else {}
    out = g.op("AveragePool" if layer.op == "avg" else "MaxPool", [x], f"{layer.op}pool",
               kernel_shape=list(layer.window), strides=list(layer.stride),
               pads=[py, px, py, px], **extra)
    return out, _conv_shape(shape, layer.window, layer.stride, layer.padding, shape[0])


def _zero_pad(g: Graph, x: str, shape: Shape, target: Shape) -> str:
    """Pad with zeros after the end of each dimension, as dlib's add_prev does."""
    if shape == target:
        return x
    after = [t - s for s, t in zip(shape, target)]
    pads = np.array([0, 0, 0, 0, 0, *after], dtype=np.int64)
    return g.op("Pad", [x, g.const(pads, "pads")], "pad")


def _add_prev(g: Graph, x: str, shape: Shape, other: tuple[str, Shape]) -> tuple[str, Shape]:
    name, other_shape = other
    if None in shape or None in other_shape:
        raise ValueError("add_prev needs a fixed input size to know how to zero-pad")
    target = tuple(max(a, b) for a, b in zip(shape, other_shape))
    out = g.op("Add", [_zero_pad(g, x, shape, target), _zero_pad(g, name, other_shape, target)], "add")
    return out, target  # type: ignore[return-value]


def add_layers(g: Graph, layers: list[Layer], x: str, shape: Shape) -> tuple[str, Shape]:
    """Append `layers` (data-flow order) to the graph after tensor `x`; return the last tensor."""
    tags: dict[int, tuple[str, Shape]] = {}
    for layer in layers:
        if isinstance(layer, Conv):
            x, shape = _add_conv(g, x, shape, layer)
        elif isinstance(layer, Affine):
            x = g.op("Mul", [x, g.const(layer.gamma[np.newaxis], "gamma")], "scale")
            x = g.op("Add", [x, g.const(layer.beta[np.newaxis], "beta")], "shift")
        elif isinstance(layer, Relu):
            x = g.op("Relu", [x], "relu")
        elif isinstance(layer, Pool):
            x, shape = _add_pool(g, x, shape, layer)
        elif isinstance(layer, Tag):
            tags[layer.id] = (x, shape)
        elif isinstance(layer, Skip):
            x, shape = tags[layer.id]
        elif isinstance(layer, AddPrev):
            x, shape = _add_prev(g, x, shape, tags[layer.tag])
        elif isinstance(layer, Fc):
            x = g.op("MatMul", [g.op("Flatten", [x], "flat", axis=1), g.const(layer.weights, "fc")], "fc")
            if layer.bias is not None:
                x = g.op("Add", [x, g.const(layer.bias, "fc_bias")], "fc_bias")
            shape = (layer.weights.shape[1], 1, 1)
        else:
            raise TypeError(f"unsupported layer {layer!r}")
    return x, shape


def _normalised_input(g: Graph, net: DlibNet) -> str:
    """uint8 NHWC chips -> (pixel - mean) / 256 in float32 NCHW, as input_rgb_image_sized does."""
    x = g.op("Transpose", [g.op("Cast", [INPUT_NAME], "float", to=TensorProto.FLOAT)], "nchw",
             perm=[0, 3, 1, 2])
    mean = np.array(net.input.mean_rgb, dtype=np.float32).reshape(1, 3, 1, 1)
    x = g.op("Sub", [x, g.const(mean, "mean")], "centre")
    return g.op("Mul", [x, g.const(np.array(1 / 256, dtype=np.float32), "inv256")], "normalise")


def build_onnx(net: DlibNet) -> onnx.ModelProto:
    """An ONNX model computing `net` (a dlib_dat.load of the face recognition ResNet)."""
    if net.input.kind != "input_rgb_image_sized" or net.input.size is None:
        raise ValueError(f"expected a fixed-size RGB input layer, found {net.input.kind}")
    rows, cols = net.input.size
    g = Graph()
    x, shape = add_layers(g, net.layers, _normalised_input(g, net), (3, rows, cols))
    inputs = [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["N", rows, cols, 3])]
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", shape[0]])]
    g.nodes[-1].output[0] = OUTPUT_NAME
    graph = helper.make_graph(g.nodes, "dlib_face_recognition_resnet", inputs, outputs, g.initializers)
    opset = helper.make_opsetid("", OPSET)
    # the oldest IR version for the opset, so that older runtimes load the file too
    model = helper.make_model(graph, opset_imports=[opset], producer_name="facewire",
                              ir_version=helper.find_min_ir_version_for([opset]))
    onnx.checker.check_model(model)
    return model


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert(dat_path: str | Path, out_path: str | Path) -> Path:
    """Convert a dlib face recognition .dat to ONNX at `out_path`, written atomically."""
    source_hash = sha256_file(dat_path)
    model = build_onnx(load(dat_path))
    helper.set_model_props(model, {SOURCE_SHA256_KEY: source_hash, CONVERTER_KEY: CONVERTER_VERSION})
    write_atomically(Path(out_path), model.SerializeToString())
    return Path(out_path)


def model_props(path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file."""
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def is_current(onnx_path: str | Path, dat_path: str | Path) -> bool:
    """True if `onnx_path` exists and was converted from this very .dat by this converter."""
    try:
        props = model_props(onnx_path)
    except (OSError, DecodeError):
        return False
    return (props.get(SOURCE_SHA256_KEY) == sha256_file(dat_path)
            and props.get(CONVERTER_KEY) == CONVERTER_VERSION)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dat", type=Path, default=None, help="dlib .dat (default: face_recognition_models')")
    parser.add_argument("--out", type=Path, default=None, help=f"ONNX file (default: {default_onnx_path()})")
    args = parser.parse_args(argv)
    dat = args.dat or default_dat()
    out = convert(dat, args.out or default_onnx_path())
    print(f"{out}  ({out.stat().st_size / 1e6:.1f} MB, from {dat.name} sha256 {sha256_file(dat)[:12]}…)")


if __name__ == "__main__":
    main()
