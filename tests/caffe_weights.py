"""Tests only: write a seeded random-weights ``.caffemodel`` for a prototxt (no trained weights are offline).

The writer walks the prototxt on its own (blob shapes through Input, Convolution, Pooling with Caffe's
ceil rounding, InnerProduct, Concat, ...) so that it cross-checks the frontend rather than reusing it.
Weights ~ N(0, 2/fan_in) keep activations O(1) through deep ReLU networks; BatchNorm blobs are stored
scaled by a random factor (blob 2) as Caffe's moving averages are.
"""

from __future__ import annotations

import math

import numpy as np

from nbtrt.frontends.caffe import messages, read_net


def _pair(p, base, hw, default):
    names = p.DESCRIPTOR.fields_by_name
    if f"{hw}_h" in names and (p.HasField(f"{hw}_h") or p.HasField(f"{hw}_w")):
        return getattr(p, f"{hw}_h"), getattr(p, f"{hw}_w")
    v = getattr(p, base)
    v = ([v] if p.HasField(base) else []) if isinstance(v, int) else list(v)
    return (v[0], v[-1]) if v else (default, default)


def blob_shapes(prototxt) -> dict[str, list[tuple[int, ...]]]:
    """{layer name: [blob shape, ...]} for every layer with learned blobs."""
    net = read_net(prototxt)
    shapes: dict[str, tuple[int, ...]] = {}
    for name, s in zip(net.input, net.input_shape):
        shapes[name] = tuple(s.dim)
    out = {}
    for layer in net.layer:
        x = shapes.get(layer.bottom[0]) if layer.bottom else None
        t = layer.type
        if t == "Input":
            y = tuple(layer.input_param.shape[0].dim)
        elif t == "Convolution":
            p = layer.convolution_param
            k, s = _pair(p, "kernel_size", "kernel", 0), _pair(p, "stride", "stride", 1)
            pad, d = _pair(p, "pad", "pad", 0), _pair(p, "dilation", "dilation", 1)
            out[layer.name] = [(p.num_output, x[1] // p.group, *k)] + ([(p.num_output,)] if p.bias_term else [])
            y = (x[0], p.num_output) + tuple((h + 2 * pp - (dd * (kk - 1) + 1)) // ss + 1
                                               for h, kk, ss, pp, dd in zip(x[2:], k, s, pad, d))
        elif t == "Pooling":
            p = layer.pooling_param
            if p.global_pooling:
                y = x[:2] + (1, 1)
            else:
                k, s = _pair(p, "kernel_size", "kernel", 0), _pair(p, "stride", "stride", 1)
                pad = _pair(p, "pad", "pad", 0)
                dims = []
                for h, kk, ss, pp in zip(x[2:], k, s, pad):
                    o = math.ceil((h + 2 * pp - kk) / ss) + 1
                    dims.append(o - 1 if pp and (o - 1) * ss >= h + pp else o)
                y = x[:2] + tuple(dims)
        elif t == "InnerProduct":
            p = layer.inner_product_param
            axis = p.axis % len(x)
            out[layer.name] = [(p.num_output, math.prod(x[axis:]))] + ([(p.num_output,)] if p.bias_term else [])
            y = x[:axis] + (p.num_output,)
        elif t == "Concat":
            axis = layer.concat_param.axis
            y = list(shapes[layer.bottom[0]])
            y[axis] = sum(shapes[b][axis] for b in layer.bottom)
            y = tuple(y)
        elif t == "BatchNorm":
            out[layer.name] = [(x[1],), (x[1],), (1,)]
            y = x
        elif t == "Scale":
            out[layer.name] = [(x[1],)] + ([(x[1],)] if layer.scale_param.bias_term else [])
            y = x
        else:
            y = x
        for top in layer.top:
            shapes[top] = y
    return out


def random_blobs(prototxt, seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    blobs = {}
    for name, shapes in blob_shapes(prototxt).items():
        if len(shapes) == 3:                        # BatchNorm: mean, variance, scale factor
            factor = np.float32(rng.uniform(0.5, 4.0))
            c = shapes[0][0]
            arrays = [rng.normal(0, 0.5, c) * factor, rng.uniform(0.5, 1.5, c) * factor, np.array([factor])]
        else:
            fan_in = math.prod(shapes[0][1:]) or 1
            arrays = [rng.normal(0, math.sqrt(2.0 / fan_in), shapes[0])]
            if len(shapes) > 1:
                arrays.append(rng.normal(0, 0.1, shapes[1]))
        blobs[name] = [np.asarray(a, np.float32) for a in arrays]
    return blobs


def write_caffemodel(prototxt, path, seed: int = 0, legacy: bool = False) -> dict[str, list[np.ndarray]]:
    """Write random weights for ``prototxt`` to ``path``; returns them. ``legacy`` writes 4-D
    num/channels/height/width blob dims (2-D weights as 1x1xNxK) instead of ``shape``."""
    m = messages()
    blobs = random_blobs(prototxt, seed)
    net = m["NetParameter"](name="random")
    for name, arrays in blobs.items():
        layer = net.layer.add(name=name)
        for a in arrays:
            blob = layer.blobs.add()
            blob.data.extend(a.ravel().tolist())
            if legacy:
                blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - a.ndim) + a.shape
            else:
                blob.shape.dim.extend(a.shape)
    with open(path, "wb") as f:
        f.write(net.SerializeToString())
    return blobs
