"""Test models for trt-ffi, written with the onnx package's helper API.

  make_models.py dynamic SRC DST      copy SRC with its first input dimension made symbolic ("N")
  make_models.py twin DST             two inputs a, b sharing the symbolic batch "N": Add, Conv, Relu
  make_models.py unknown_op DST       a valid ONNX graph whose node "mystery" uses an op nobody has
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def dynamic(src, dst):
    model = onnx.load(src)
    initializers = {i.name for i in model.graph.initializer}
    for value in list(model.graph.input) + list(model.graph.output):
        if value.name in initializers:
            continue
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "N"
    onnx.save(model, dst)


def twin(dst):
    rng = np.random.default_rng(7)  # fixed seed: the model is an input to byte comparisons
    weight = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.standard_normal((8,)).astype(np.float32), "bias")
    shape = ["N", 3, 32, 32]
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["a", "b"], ["sum"], name="add"),
            helper.make_node("Conv", ["sum", "w", "bias"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["y"], name="relu"),
        ],
        "twin",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, shape),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, shape),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 32, 32])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, dst)


def unknown_op(dst):
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("NoSuchOp", ["r"], ["y"], name="mystery", domain="trtfarm.test"),
        ],
        "unknown_op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("trtfarm.test", 1)],
    )
    model.ir_version = 8
    onnx.save(model, dst)


if __name__ == "__main__":
    if sys.argv[1] == "dynamic":
        dynamic(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "twin":
        twin(sys.argv[2])
    elif sys.argv[1] == "unknown_op":
        unknown_op(sys.argv[2])
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
