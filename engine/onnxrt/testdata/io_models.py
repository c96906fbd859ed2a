"""Write small ONNX models whose input and output declarations take the
unusual forms that readModelIO must report as ONNX Runtime does.

Usage: io_models.py OUT_DIR   (writes OUT_DIR/<case>.onnx)
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out = sys.argv[1]
w = numpy_helper.from_array(np.ones((4, 2), np.float32), "W")


def save(name, graph, ir=8, opset=13):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir
    onnx.save(model, os.path.join(out, name + ".onnx"))


def matmul_graph(inputs, outputs, initializers, sparse=()):
    return helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                             inputs, outputs, initializer=initializers, sparse_initializer=list(sparse))


x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])

# IR 3: every weight is also a graph input.
save("weights_as_inputs", matmul_graph([x, helper.make_tensor_value_info("W", TensorProto.FLOAT, [4, 2])], [y], [w]), ir=3, opset=9)
# A weight given as a sparse initializer.
sp = helper.make_sparse_tensor(numpy_helper.from_array(np.ones(8, np.float32), "W"),
                               numpy_helper.from_array(np.arange(8, dtype=np.int64), "W_idx"), [4, 2])
save("sparse_initializer", matmul_graph([x], [y], [], [sp]))
# Dimensions: a fixed value, a named one, one with neither; int64 input.
xi = helper.make_tensor_value_info("ids", TensorProto.INT64, [3, "n", None])
cast = helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.FLOAT)
flat = helper.make_node("Flatten", ["f"], ["x"], axis=1)
save("mixed_dims", helper.make_graph([cast, flat, helper.make_node("Identity", ["x"], ["y"])], "g",
                                     [xi], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]))
# A tensor whose shape is not declared at all.
x_noshape = helper.make_tensor_value_info("x", TensorProto.FLOAT16, None)
save("no_shape", helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                                   [x_noshape], [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)]))
# A sequence output and two outputs.
seq = helper.make_node("SequenceConstruct", ["x", "x"], ["s"])
save("sequence_output", helper.make_graph([seq, helper.make_node("Identity", ["x"], ["y"])], "g",
                                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                                          [helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None),
                                           helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]))
# Type denotations (TypeProto.denotation, written after tensor_type): they
# name what a tensor means and change nothing of its type or shape.
xd = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
xd.type.denotation = "TENSOR"
yd = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])
yd.type.denotation = "TENSOR"
save("denotation", matmul_graph([xd], [yd], [w]))
