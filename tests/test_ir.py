"""The IR: SSA values with O(1) producer/uses, rewiring, topological order, verification, printing."""

import numpy as np
import pytest

from nbtrt.errors import GraphError
from nbtrt.ir import Graph, Node, TensorType, Value


def small_graph():
    g = Graph("g")
    x = g.add_input("x", TensorType("float32", ("N", 4)))
    w = g.add_constant("w", np.ones((4,), np.float32))
    add = g.add_node("Add", [x, w], name="add")
    relu = g.add_node("Relu", [add.outputs[0]], name="relu")
    for n in g.nodes:
        n.outputs[0].type = TensorType("float32", ("N", 4))
    g.outputs = [relu.outputs[0]]
    return g, x, w, add, relu


def test_producer_and_uses():
    g, x, w, add, relu = small_graph()
    assert add.outputs[0].producer() is add
    assert x.producer() is None
    assert x.uses() == [(add, 0)] and w.uses() == [(add, 1)]
    assert add.outputs[0].uses() == [(relu, 0)]
    g.verify()


def test_replace_uses_and_remove():
    g, x, w, add, relu = small_graph()
    g.replace_uses(add.outputs[0], x)
    assert relu.inputs[0] is x and add.outputs[0].uses() == []
    g.remove_node(add)
    assert x.uses() == [(relu, 0)] and w.uses() == []
    g.verify()


def test_remove_used_node_refused():
    g, x, w, add, relu = small_graph()
    with pytest.raises(GraphError, match="still used"):
        g.remove_node(add)


def test_toposort_and_cycle():
    g, x, w, add, relu = small_graph()
    g.nodes.reverse()
    g.toposort()
    assert g.nodes == [add, relu]
    add.set_input(0, relu.outputs[0])
    with pytest.raises(GraphError, match="cycle"):
        g.toposort()


def test_verify_catches_use_before_definition():
    g, x, w, add, relu = small_graph()
    g.nodes.reverse()
    with pytest.raises(GraphError, match="before it is defined"):
        g.verify()


def test_unique_names_and_printer():
    g, x, w, add, relu = small_graph()
    v = g.add_constant("w", np.zeros(2, np.float32))
    assert v.name == "w_1"
    text = str(g)
    assert "%add_out0: float32[N,4] = Add(%x, %w)" in text and "return %relu_out0" in text


def test_types():
    t = TensorType("float16", (1, "N", None))
    assert t.rank == 3 and not t.is_static and str(t) == "float16[1,N,?]"
    assert TensorType("int8", (2, 3)).numel() == 6
    assert Value("c", const=np.zeros((2, 2), np.int64)).type == TensorType("int64", (2, 2))
    n = Node("Relu", [None], [Value("o")])
    assert n.name == "o" and n.inputs == (None,)
