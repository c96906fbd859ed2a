"""Write a linear stand-in for a CLIP tower: embedding = flatten(input) @ W.

Usage: matmul_model.py OUT.onnx INPUT_NAME ELEM_TYPE DIMS OUTPUT_NAME EMBED_DIM
  ELEM_TYPE: float32 | int32 | int64   DIMS: comma-separated, N for the batch
W[i][j] = ((i * 7 + j * 3) % 11 - 5) / 10, which the Go test recomputes.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out, in_name, elem, dims, out_name, dim = sys.argv[1:7]
dim = int(dim)
shape = [d if d == "N" else int(d) for d in dims.split(",")]
flat = int(np.prod([d for d in shape[1:]]))
types = {"float32": TensorProto.FLOAT, "int32": TensorProto.INT32, "int64": TensorProto.INT64}
i = np.arange(flat)[:, None]
j = np.arange(dim)[None, :]
w = (((i * 7 + j * 3) % 11) - 5).astype(np.float32) / 10

nodes = []
x = in_name
if elem != "float32":
    nodes.append(helper.make_node("Cast", [x], ["x_float"], to=TensorProto.FLOAT))
    x = "x_float"
nodes.append(helper.make_node("Flatten", [x], ["x_flat"], axis=1))
nodes.append(helper.make_node("MatMul", ["x_flat", "W"], [out_name]))
graph = helper.make_graph(
    nodes, "linear_tower",
    [helper.make_tensor_value_info(in_name, types[elem], shape)],
    [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", dim])],
    initializer=[numpy_helper.from_array(w, "W")],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, out)
