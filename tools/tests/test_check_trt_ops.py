"""Tests of tools/check-trt-ops, the static check of exported graphs against
an onnx-tensorrt operator matrix (`make check-trt`).

Run: /usr/bin/python3 -m unittest discover -s tools/tests -p 'test_check_trt_ops.py'
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

TESTS = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(os.path.dirname(TESTS), "check-trt-ops")

try:
    import onnx
    from onnx import TensorProto, helper
    MISSING = None
except ImportError as err:
    MISSING = f"{err}; run with Debian's /usr/bin/python3 (onnx)"

# The layout of onnx-tensorrt's docs/operators.md (8.5-GA), abridged.
MATRIX = """# Supported ONNX Operators

TensorRT 8.5 supports operators up to Opset 17. Latest information of ONNX operators can be found [here](x)

| Operator                  | Supported  | Supported Types | Restrictions |
|---------------------------|------------|-----------------|--------------|
| AveragePool               | Y          | FP32, FP16 | 2D or 3D Pooling only |
| LayerNormalization        | N          |
| Relu                      | Y          | FP32, FP16, INT8 |
| Slice                     | Y          | FP32, FP16 | `axes` must be an initializer |
| Shape                     | Y          | FP32, FP16 |
"""


def save(path, nodes, inits=(), opset=17, inputs=None):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", inputs or [x], [y], initializer=list(inits))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return path


@unittest.skipIf(MISSING, f"onnx unavailable: {MISSING}")
class CheckTRTOpsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="check-trt-ops-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.matrix = os.path.join(self.tmp, "operators.md")
        with open(self.matrix, "w") as f:
            f.write(MATRIX)

    def run_tool(self, *models):
        return subprocess.run([sys.executable, TOOL, self.matrix, *models], capture_output=True, text=True,
                              timeout=120)

    def test_supported_graph_passes(self):
        ok = save(os.path.join(self.tmp, "ok.onnx"), [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("AveragePool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
        ])
        result = self.run_tool(ok)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("ok ", result.stdout)
        self.assertIn("AveragePool 1, Relu 1", result.stdout)

    def test_findings_fail_and_are_named(self):
        scale = helper.make_tensor("scale", TensorProto.FLOAT, [8], [1.0] * 8)
        bias = helper.make_tensor("bias", TensorProto.FLOAT, [8], [0.0] * 8)
        starts = helper.make_tensor("starts", TensorProto.INT64, [1], [0])
        ends = helper.make_tensor("ends", TensorProto.INT64, [1], [1])
        bad = save(os.path.join(self.tmp, "bad.onnx"), [
            helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["n"], axis=-1),
            helper.make_node("Shape", ["n"], ["computed_axes_src"]),
            helper.make_node("Slice", ["computed_axes_src", "starts", "ends"], ["axes"]),
            helper.make_node("Slice", ["n", "starts", "ends", "axes"], ["s"]),
            helper.make_node("Gelu", ["s"], ["g"]),
            helper.make_node("AveragePool", ["g"], ["y"], kernel_shape=[2], dilations=[2]),
        ], inits=[scale, bias, starts, ends])
        old = save(os.path.join(self.tmp, "opset18.onnx"), [helper.make_node("Relu", ["x"], ["y"])], opset=18)
        result = self.run_tool(bad, old)
        self.assertEqual(result.returncode, 1)
        for fragment in ("LayerNormalization is marked unsupported", "Gelu is not in the matrix",
                         "Slice axes come from a computed tensor", "AveragePool over 1 dimensions",
                         "AveragePool with dilations [2]", "opset 18 is outside the supported 1..17"):
            self.assertIn(fragment, result.stdout)

    def test_matrix_without_table_is_an_error(self):
        with open(self.matrix, "w") as f:
            f.write("# nothing here\n")
        ok = save(os.path.join(self.tmp, "ok.onnx"), [helper.make_node("Relu", ["x"], ["y"])])
        result = self.run_tool(ok)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("no operator table", result.stderr)


if __name__ == "__main__":
    unittest.main()
