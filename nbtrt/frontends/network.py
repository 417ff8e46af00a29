"""Layer-by-layer network definition (like TensorRT's ``INetworkDefinition``).

A :class:`Network` builds the same IR the ONNX frontend does: canonical ops of the latest ONNX opset,
attributes completed by :func:`nbtrt.ops.fill_attributes` and types set by :func:`nbtrt.ops.infer_node`
as each layer is added, so a mistake raises at the layer that made it. Errors are
:class:`~nbtrt.errors.ShapeError`, :class:`~nbtrt.errors.AttributeValueError` or
:class:`~nbtrt.errors.GraphError` whose message starts ``layer 'NAME' (kind):``; a failed layer leaves
the network as it was. Tensors are :class:`nbtrt.ir.Value` objects of this network. Weights are numpy
arrays, copied and cast to the dtype of the layer's input (float32 for a float32 network)::

    net = nbtrt.Network("cnn")
    x = net.add_input("data", "float32", ("N", 3, 32, 32))
    c = net.add_convolution(x, 16, (3, 3), W, b, padding=(1, 1), name="conv1")      # Conv
    r = net.add_activation(c, "relu", name="relu1")       # relu sigmoid tanh leaky_relu(alpha) clip(alpha=lo,
    #   beta=hi) hard_sigmoid(alpha, beta) hard_swish elu(alpha) selu softplus gelu gelu_tanh
    p = net.add_pooling(r, "max", (2, 2))                 # max, avg (count_include_pad), global_max, global_avg
    s = net.add_elementwise(p, p, "sum")                  # sum prod sub div max min pow (numpy operands ok)
    f = net.add_fully_connected(s, 10, W2, b2)            # Flatten(axis=1) + Gemm(transB=1)
    net.mark_output(net.add_softmax(f, axis=1), "prob")
    graph = net.graph()                                   # a fresh verify()'d Graph per call

Also: ``add_concatenation`` (Concat), ``add_matmul`` (Transpose + MatMul), ``add_scale`` (per-tensor,
per-channel or elementwise ``(x*scale + shift) ** power`` as Mul/Add/Pow), ``add_batchnorm``
(BatchNormalization), ``add_lrn`` (LRN), ``add_shuffle`` (Transpose, Reshape with ONNX 0/-1 rules,
Transpose), ``add_reshape``, ``add_constant``, ``add_plugin`` (a :class:`nbtrt.plugins.Plugin`
instance). Node names are the layer names (extra nodes of a layer get a suffix: ``fc1_flatten``);
``graph()`` copies, so ``nbtrt.plan``/``nbtrt.compile`` may rewrite it (plugin instances are shared).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ..errors import AttributeValueError, GraphError, PluginError, ShapeError
from ..ir import Graph, Node, TensorType, Value
from ..ops import fill_attributes, infer_node
from ..plugins import PLUGIN_OP, Plugin

# activation name -> (ONNX op, {attribute: default}); "clip" takes its bounds as inputs instead
# activation name -> (ONNX op, fixed attributes, the attributes that alpha and beta set)
ACTIVATIONS = {"relu": ("Relu", {}, ()), "sigmoid": ("Sigmoid", {}, ()), "tanh": ("Tanh", {}, ()),
               "leaky_relu": ("LeakyRelu", {}, ("alpha",)), "hard_sigmoid": ("HardSigmoid", {}, ("alpha", "beta")),
               "hard_swish": ("HardSwish", {}, ()), "elu": ("Elu", {}, ("alpha",)), "selu": ("Selu", {}, ("alpha", "gamma")),
               "softplus": ("Softplus", {}, ()), "gelu": ("Gelu", {"approximate": "none"}, ()),
               "gelu_tanh": ("Gelu", {"approximate": "tanh"}, ()), "clip": ("Clip", {}, ("min", "max"))}
ELEMENTWISE = {"sum": "Add", "prod": "Mul", "sub": "Sub", "div": "Div", "max": "Max", "min": "Min", "pow": "Pow"}
POOLING = {"max": "MaxPool", "avg": "AveragePool", "global_max": "GlobalMaxPool", "global_avg": "GlobalAveragePool"}
_ROLLBACK = (ShapeError, AttributeValueError, GraphError, PluginError)


class Network:
    """A network definition: add inputs and layers, mark outputs, then take :meth:`graph`."""

    def __init__(self, name: str = "network"):
        self.name = name
        self._graph = Graph(name)
        self._tensors: set[Value] = set()
        self._layers: set[str] = set()
        self._count = 0
        self._layer = ""  # the layer being added (names its weights)

    # -- inputs, constants, outputs ---------------------------------------------------------------
    def add_input(self, name: str, dtype: str, shape) -> Value:
        """A graph input; dims are ints or names of symbolic dims (``"N"``)."""
        if name in self._graph._names:
            raise GraphError(f"input {name!r}: the name is already taken in network {self.name!r}")
        shape = tuple(d if isinstance(d, str) else int(d) for d in shape)
        if any(isinstance(d, int) and d < 0 for d in shape):
            raise ShapeError(f"input {name!r}: negative dimension in {shape}")
        try:
            np.dtype(dtype)
        except TypeError:
            raise ShapeError(f"input {name!r}: unknown dtype {dtype!r}") from None
        return self._own(self._graph.add_input(name, TensorType(np.dtype(dtype).name, shape)))

    def add_constant(self, array, name: str | None = None) -> Value:
        """A constant tensor (the array is copied)."""
        return self._own(self._graph.add_constant(name or "constant", np.array(array)))

    def mark_output(self, tensor: Value, name: str | None = None) -> None:
        """Make ``tensor`` a network output, renamed to ``name`` when given."""
        self._check(tensor, f"output {name or tensor.name!r}")
        if tensor in self._graph.outputs:
            raise GraphError(f"output {tensor.name!r}: the tensor is marked as an output twice")
        if name and name != tensor.name:
            if name in self._graph._names:
                raise GraphError(f"output {name!r}: the name is already taken in network {self.name!r}")
            if tensor.producer() is None:  # keep an input's (or constant's) own name: copy it out
                with self._layering(name, "output") as name:
                    tensor = self._node("Identity", [tensor], {}, name)
            self._graph._names.add(name)
            tensor.name = name
        self._graph.outputs.append(tensor)

    def graph(self) -> Graph:
        """A fresh, verified copy of the network's IR graph (passes may rewrite it freely)."""
        if not self._graph.outputs:
            raise GraphError(f"network {self.name!r} has no outputs (call mark_output)")
        g, new = Graph(self.name), {}
        for v in self._graph.inputs:
            new[v] = Value(v.name, v.type)
            g.inputs.append(new[v])
        for key, v in self._graph.constants.items():
            new[v] = g.constants[key] = Value(v.name, const=v.const.copy())
        for n in self._graph.nodes:
            outs = [Value(o.name, o.type) for o in n.outputs]
            new.update(zip(n.outputs, outs))
            g.insert(Node(n.op, [None if v is None else new[v] for v in n.inputs], outs, dict(n.attrs),
                          name=n.name, domain=n.domain))
        g.outputs = [new[v] for v in self._graph.outputs]
        g._names = set(self._graph._names)
        g.verify()
        return g

    # -- layers ------------------------------------------------------------------------------------
    def add_convolution(self, x, num_outputs: int, kernel, weights, bias=None, stride=None, padding=None,
                        dilation=None, groups: int = 1, name: str | None = None) -> Value:
        """Conv with ``weights`` of shape (num_outputs, C/groups, *kernel) (or that many elements)."""
        with self._layering(name, "convolution") as name:
            self._check(x)
            kernel = _ints(kernel, "kernel")
            nd = len(kernel)
            c = x.type.shape[1] if x.type.shape is not None and len(x.type.shape) > 1 else None
            if isinstance(c, int) and c % groups:
                raise ShapeError(f"{c} input channels do not split into {groups} groups")
            want = (num_outputs, c // groups if isinstance(c, int) else None, *kernel)
            w = self._weights(weights, x, want, "weights")
            inputs = [x, w] + ([self._weights(bias, x, (num_outputs,), "bias")] if bias is not None else [])
            attrs = {"kernel_shape": kernel, "strides": _ints(stride or (1,) * nd, "stride", nd),
                     "pads": _ints(padding or (0,) * nd, "padding", nd) * 2,
                     "dilations": _ints(dilation or (1,) * nd, "dilation", nd), "group": int(groups)}
            return self._node("Conv", inputs, attrs, name)

    def add_activation(self, x, kind: str, alpha: float | None = None, beta: float | None = None,
                       name: str | None = None) -> Value:
        """An activation; ``alpha``/``beta`` are its parameters (for clip: the lower/upper bound)."""
        with self._layering(name, "activation") as name:
            self._check(x)
            if kind not in ACTIVATIONS:
                raise AttributeValueError(f"unknown activation {kind!r} (known: {', '.join(ACTIVATIONS)})")
            op, attrs, params = ACTIVATIONS[kind]
            given = [(p, v) for p, v in zip(("alpha", "beta"), (alpha, beta)) if v is not None]
            if any(p == "beta" and len(params) < 2 or p == "alpha" and not params for p, _ in given):
                raise AttributeValueError(f"activation {kind!r} takes {len(params)} parameter(s), got "
                                          f"{', '.join(p for p, _ in given)}")
            if kind == "clip":
                bounds = [None if b is None else self._const(np.array(b, x.type.dtype), f"{name}_{m}")
                          for b, m in ((alpha, "min"), (beta, "max"))]
                return self._node("Clip", [x, *bounds] if beta is not None else [x, *bounds[:1]] if alpha is not None
                                  else [x], {}, name)
            attrs = {**attrs, **{params[("alpha", "beta").index(p)]: _f32(v) for p, v in given}}
            return self._node(op, [x], attrs, name)

    def add_pooling(self, x, kind: str, window=None, stride=None, padding=None,
                    count_include_pad: bool = False, ceil_mode: bool = False, name: str | None = None) -> Value:
        """Max/average pooling (stride defaults to the window) or global max/average pooling."""
        with self._layering(name, "pooling") as name:
            self._check(x)
            if kind not in POOLING:
                raise AttributeValueError(f"unknown pooling {kind!r} (known: {', '.join(POOLING)})")
            if kind.startswith("global"):
                return self._node(POOLING[kind], [x], {}, name)
            if window is None:
                raise AttributeValueError(f"{kind} pooling needs a window")
            window = _ints(window, "window")
            nd = len(window)
            attrs = {"kernel_shape": window, "strides": _ints(stride or window, "stride", nd),
                     "pads": _ints(padding or (0,) * nd, "padding", nd) * 2, "ceil_mode": int(ceil_mode)}
            if kind == "avg":
                attrs["count_include_pad"] = int(count_include_pad)
            return self._node(POOLING[kind], [x], attrs, name)

    def add_elementwise(self, a, b, kind: str, name: str | None = None) -> Value:
        """A broadcasting binary op; an operand may be a numpy array (becomes a constant)."""
        with self._layering(name, "elementwise") as name:
            if kind not in ELEMENTWISE:
                raise AttributeValueError(f"unknown elementwise op {kind!r} (known: {', '.join(ELEMENTWISE)})")
            a, b = self._operand(a, b, f"{name}_a"), self._operand(b, a, f"{name}_b")
            return self._node(ELEMENTWISE[kind], [a, b], {}, name)

    def add_concatenation(self, tensors, axis: int = 1, name: str | None = None) -> Value:
        with self._layering(name, "concatenation") as name:
            if not tensors:
                raise ShapeError("needs at least one tensor")
            for t in tensors:
                self._check(t)
            return self._node("Concat", list(tensors), {"axis": int(axis)}, name)

    def add_fully_connected(self, x, num_outputs: int, weights, bias=None, name: str | None = None) -> Value:
        """Flatten(axis=1) (unless ``x`` is 2-D) then Gemm(transB=1); weights (num_outputs, K)."""
        with self._layering(name, "fully_connected") as name:
            self._check(x)
            shape = x.type.shape
            k = None if shape is None or not all(isinstance(d, int) for d in shape[1:]) else int(np.prod(shape[1:]))
            w = self._weights(weights, x, (num_outputs, k), "weights")
            if shape is None or len(shape) != 2:
                x = self._node("Flatten", [x], {"axis": 1}, f"{name}_flatten")
            inputs = [x, w] + ([self._weights(bias, x, (num_outputs,), "bias")] if bias is not None else [])
            return self._node("Gemm", inputs, {"transB": 1}, name)

    def add_matmul(self, a, b, transpose_a: bool = False, transpose_b: bool = False, name: str | None = None) -> Value:
        """MatMul, with the last two axes of an operand swapped first (Transpose) when asked."""
        with self._layering(name, "matmul") as name:
            a, b = self._operand(a, b, f"{name}_a"), self._operand(b, a, f"{name}_b")
            ops = []
            for v, flip, tag in ((a, transpose_a, "a"), (b, transpose_b, "b")):
                if flip:
                    if v.type.rank is None or v.type.rank < 2:
                        raise ShapeError(f"cannot transpose operand {tag} of rank {v.type.rank}")
                    perm = (*range(v.type.rank - 2), v.type.rank - 1, v.type.rank - 2)
                    v = self._node("Transpose", [v], {"perm": perm}, f"{name}_transpose_{tag}")
                ops.append(v)
            return self._node("MatMul", ops, {}, name)

    def add_softmax(self, x, axis: int = -1, name: str | None = None) -> Value:
        with self._layering(name, "softmax") as name:
            self._check(x)
            return self._node("Softmax", [x], {"axis": int(axis)}, name)

    def add_scale(self, x, mode: str = "channel", shift=None, scale=None, power=None, channel_axis: int = 1,
                  name: str | None = None) -> Value:
        """``(x * scale + shift) ** power``; mode "uniform" (scalars), "channel" (one value per channel
        of ``channel_axis``) or "elementwise" (arrays shaped like x without its batch axis)."""
        with self._layering(name, "scale") as name:
            self._check(x)
            rank = x.type.rank
            if mode not in ("uniform", "channel", "elementwise") or rank is None:
                raise AttributeValueError(f"unknown mode {mode!r} (uniform, channel, elementwise)"
                                          if rank is not None else "needs an input of known rank")
            axis = channel_axis % rank
            shape = {"uniform": (), "elementwise": tuple(x.type.shape[1:]),
                     "channel": (x.type.shape[axis], *(1,) * (rank - 1 - axis))}[mode]
            y, first = x, True
            for arr, op, role in ((scale, "Mul", "scale"), (shift, "Add", "shift"), (power, "Pow", "power")):
                if arr is not None:
                    c = self._weights(arr, x, shape, role)
                    y = self._node(op, [y, c], {}, name if first else f"{name}_{role}")
                    first = False
            return y if not first else self._node("Identity", [x], {}, name)

    def add_batchnorm(self, x, scale, bias, mean, var, epsilon: float = 1e-5, name: str | None = None) -> Value:
        """BatchNormalization (inference) with per-channel scale, bias, mean and variance."""
        with self._layering(name, "batchnorm") as name:
            self._check(x)
            c = x.type.shape[1] if x.type.rank and x.type.rank > 1 else None
            ps = [self._weights(a, x, (c if isinstance(c, int) else np.size(a),), r)
                  for a, r in ((scale, "scale"), (bias, "bias"), (mean, "mean"), (var, "var"))]
            return self._node("BatchNormalization", [x, *ps], {"epsilon": _f32(epsilon)}, name)

    def add_lrn(self, x, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
                name: str | None = None) -> Value:
        with self._layering(name, "lrn") as name:
            self._check(x)
            attrs = {"size": int(size), "alpha": _f32(alpha), "beta": _f32(beta), "bias": _f32(k)}
            return self._node("LRN", [x], attrs, name)

    def add_shuffle(self, x, first_transpose=None, reshape=None, second_transpose=None,
                    name: str | None = None) -> Value:
        """Transpose, Reshape (0 copies a dim, -1 infers one, as in ONNX), Transpose; each optional."""
        with self._layering(name, "shuffle") as name:
            self._check(x)
            steps = [(op, arg) for op, arg in (("Transpose", first_transpose), ("Reshape", reshape),
                                               ("Transpose", second_transpose)) if arg is not None]
            y = x
            for i, (op, arg) in enumerate(steps):
                node_name = name if i == len(steps) - 1 else f"{name}_{op.lower()}{i}"
                if op == "Transpose":
                    y = self._node(op, [y], {"perm": _ints(arg, "perm")}, node_name)
                else:
                    shape = self._const(np.array(_ints(arg, "reshape"), np.int64), f"{name}_shape")
                    y = self._node(op, [y, shape], {}, node_name)
            return y if steps else self._node("Identity", [x], {}, name)

    def add_plugin(self, plugin: Plugin, inputs, name: str | None = None):
        """A plugin layer: its output tensor, or the list of them when the plugin has several."""
        with self._layering(name, "plugin") as name:
            if not isinstance(plugin, Plugin):
                raise GraphError(f"expected a nbtrt.plugins.Plugin instance, got {type(plugin).__name__}")
            for t in inputs:
                self._check(t)
            n = plugin.num_outputs
            names = [name] if n == 1 else [f"{name}_out{i}" for i in range(n)]
            node = self._graph.add_node(PLUGIN_OP, list(inputs), n, {"plugin": plugin}, name=name,
                                        domain=plugin.key()[1], output_names=names)
            fill_attributes(node)
            infer_node(node)
            outs = [self._own(v) for v in node.outputs]
            return outs[0] if n == 1 else outs

    def add_reshape(self, x, shape, name: str | None = None) -> Value:
        return self.add_shuffle(x, reshape=shape, name=name)

    # -- helpers -----------------------------------------------------------------------------------
    @contextmanager
    def _layering(self, name: str | None, kind: str):
        """Name the layer, prefix its errors with it and undo its partial changes when it fails."""
        self._count += 1
        name = name or f"{kind}_{self._count}"
        if name in self._layers:
            raise GraphError(f"layer {name!r} ({kind}): a layer of that name already exists")
        self._layer = name
        g = self._graph
        n_nodes, consts, names, tensors = len(g.nodes), dict(g.constants), set(g._names), set(self._tensors)
        try:
            yield name
        except _ROLLBACK as e:
            for node in g.nodes[n_nodes:]:
                node.detach()
            del g.nodes[n_nodes:]
            g.constants, g._names, self._tensors = consts, names, tensors
            raise type(e)(f"layer {name!r} ({kind}): {e}") from None
        self._layers.add(name)

    def _own(self, v: Value) -> Value:
        self._tensors.add(v)
        return v

    def _check(self, v, what: str = "input") -> None:
        if not isinstance(v, Value):
            raise GraphError(f"{what} is a {type(v).__name__}, not a tensor of this network")
        if v not in self._tensors:
            raise GraphError(f"{what} {v.name!r} is a tensor of another network")

    def _operand(self, v, other, name: str) -> Value:
        """A tensor of this network, or an array made a constant of the other operand's dtype."""
        if isinstance(v, Value):
            self._check(v)
            return v
        dtype = other.type.dtype if isinstance(other, Value) else None
        return self._const(np.array(v, dtype=dtype), name)

    def _const(self, array: np.ndarray, name: str) -> Value:
        return self._own(self._graph.add_constant(name, array))

    def _weights(self, array, x: Value, shape, role: str) -> Value:
        """Copy ``array`` as a constant in x's float dtype, reshaped to ``shape`` (None: any dim)."""
        a = np.array(array)
        if np.issubdtype(np.dtype(x.type.dtype), np.floating):
            a = a.astype(x.type.dtype)
        if all(isinstance(d, int) for d in shape) and a.size == int(np.prod(shape)):
            a = a.reshape(shape)
        if a.ndim != len(shape) or any(d is not None and d != s for d, s in zip(shape, a.shape)):
            want = "x".join("?" if d is None else str(d) for d in shape) or "scalar"
            raise ShapeError(f"{role} of shape {list(a.shape)}, expected {want}")
        return self._const(a, f"{self._layer}_{role}")

    def _node(self, op: str, inputs, attrs: dict, name: str) -> Value:
        node = self._graph.add_node(op, inputs, attrs=attrs, name=name, output_names=[name])
        fill_attributes(node)
        infer_node(node)
        return self._own(node.outputs[0])


def _f32(value) -> float:
    """A float attribute as ONNX stores it (float32), so both frontends give equal attributes."""
    return float(np.float32(value))


def _ints(values, what: str, n: int | None = None) -> tuple[int, ...]:
    values = (values,) if isinstance(values, (int, np.integer)) else values
    try:
        out = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise AttributeValueError(f"{what} must be integers, got {values!r}") from None
    if n is not None and len(out) != n:
        raise AttributeValueError(f"{what} {list(out)} has {len(out)} values, the kernel has {n} dims")
    return out
