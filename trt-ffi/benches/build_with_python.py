"""Builds an engine through NVIDIA's TensorRT-RTX Python bindings, as trt-ffi's baseline.

  build_with_python.py --onnx M --plan P [--cc 86 --cc 120] [--profile NAME:MIN:OPT:MAX ...]
                       [--repeat N]

Shapes are comma-separated ("1,3,224,224"); all --profile entries form one optimisation
profile. Prints one JSON object: the seconds of each build (parse + configure + build, like
trt-ffi's Toolchain::build) and the plan size.
"""
import argparse
import json
import time

import tensorrt_rtx_bindings as trt


def shape(text):
    return tuple(int(v) for v in text.split(","))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--plan", required=True)
    parser.add_argument("--cc", type=int, action="append", default=[])
    parser.add_argument("--profile", action="append", default=[])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    logger = trt.Logger(trt.Logger.ERROR)
    seconds = []
    plan = None
    for _ in range(args.repeat):
        start = time.perf_counter()
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        onnx_parser = trt.OnnxParser(network, logger)
        if not onnx_parser.parse_from_file(args.onnx):
            raise SystemExit("\n".join(str(onnx_parser.get_error(i)) for i in range(onnx_parser.num_errors)))
        config = builder.create_builder_config()
        if args.profile:
            profile = builder.create_optimization_profile()
            for entry in args.profile:
                name, lo, opt, hi = entry.rsplit(":", 3)
                profile.set_shape(name, shape(lo), shape(opt), shape(hi))
            config.add_optimization_profile(profile)
        if args.cc:
            config.num_compute_capabilities = len(args.cc)
            for index, cc in enumerate(args.cc):
                config.set_compute_capability(getattr(trt.ComputeCapability, f"SM{cc}"), index)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise SystemExit("build failed")
        with open(args.plan, "wb") as out:
            out.write(plan)
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"seconds": seconds, "size": plan.nbytes}))


if __name__ == "__main__":
    main()
