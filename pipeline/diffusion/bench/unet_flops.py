"""UNet FLOPs of an ONNX inpainting model at several working sizes: one object's crop versus a
full 512x512 frame.

    python3 pipeline/diffusion/bench/unet_flops.py [MODEL_DIR] [--sizes 64,128,256,512] [--steps 25]

Counts multiply-accumulates of every Conv, MatMul and Gemm node from shapes that ONNX Runtime's
symbolic shape inference derives for a batch of one at each size (the VAE's downsampling factor is
found by encoding a probe image, never assumed); FLOPs = 2 x MACs. Normalisations, softmax and
element-wise ops are left out (a few percent in SD UNets). Attention products (MatMul of two
activations) are reported apart, since they grow with the square of the latent area.
Needs: onnx, onnxruntime, sympy.
"""
import argparse
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference


def vae_factor(model_dir, probe=64):
    s = ort.InferenceSession(os.path.join(model_dir, "vae_encoder", "model.onnx"))
    out = s.run(None, {s.get_inputs()[0].name: np.zeros((1, 3, probe, probe), np.float32)})[0]
    return probe // out.shape[2]


def unet_macs(unet, latent):
    """(total MACs, attention MACs) of one UNet call on a [1, 9, latent, latent] sample."""
    m = onnx.ModelProto()
    m.CopyFrom(unet)
    for i in m.graph.input:
        dims = i.type.tensor_type.shape.dim
        rank = len(dims)
        for k, d in enumerate(dims):
            if d.HasField("dim_value"):
                continue
            d.ClearField("dim_param")
            # batch first; the latent's height and width last; anything else (sequence) must be static
            d.dim_value = 1 if k == 0 else latent
            if rank == 4 and k == 1:
                raise SystemExit(f"input {i.name}: dynamic channel dimension")
    m = SymbolicShapeInference.infer_shapes(m, auto_merge=True)
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
    for init in m.graph.initializer:
        shapes[init.name] = list(init.dims)
    weights = {init.name for init in m.graph.initializer}
    total = attention = 0
    for n in m.graph.node:
        if n.op_type not in ("Conv", "MatMul", "Gemm"):
            continue
        out = shapes[n.output[0]]
        if None in out:
            raise SystemExit(f"{n.name}: unknown output shape {out}")
        if n.op_type == "Conv":
            w = shapes[n.input[1]]
            macs = int(np.prod(out)) * int(np.prod(w[1:]))
        elif n.op_type == "MatMul":
            k = shapes[n.input[0]][-1]
            macs = int(np.prod(out)) * k
            if n.input[0] not in weights and n.input[1] not in weights:
                attention += macs
        else:  # Gemm: Y[M, N] = A[M, K] B
            a = shapes[n.input[0]]
            trans_a = next((at.i for at in n.attribute if at.name == "transA"), 0)
            k = a[0] if trans_a else a[1]
            macs = int(np.prod(out)) * k
        total += macs
    return total, attention


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    shared = os.environ.get("ROADSYNTH_SHARED", os.path.join(here, "../../../../shared"))
    p = argparse.ArgumentParser()
    p.add_argument("model", nargs="?", default=os.path.join(shared, "models/tiny-sd-inpaint"))
    p.add_argument("--sizes", default="64,128,256,512", help="working sizes in pixels")
    p.add_argument("--steps", type=int, default=25)
    args = p.parse_args()
    factor = vae_factor(args.model)
    unet = onnx.load(os.path.join(args.model, "unet", "model.onnx"))
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        latent = size // factor
        macs, attn = unet_macs(unet, latent)
        rows.append({"pixels": size, "latent": latent, "gflops_per_call": 2 * macs / 1e9,
                     "attention_share": attn / macs,
                     "gflops_per_object_cfg": 2 * 2 * macs * args.steps / 1e9})
    frame = next((r for r in rows if r["pixels"] == 512), rows[-1])
    print(f"model {args.model}: VAE factor {factor}, batch 1, FLOPs = 2 x MACs of Conv/MatMul/Gemm")
    print(f"{'size px':>8} {'latent':>7} {'GFLOP/call':>11} {'attn':>6} "
          f"{'GFLOP/object ' + str(args.steps) + ' steps CFG':>28} {'x 512 frame':>12}")
    for r in rows:
        print(f"{r['pixels']:>8} {r['latent']:>7} {r['gflops_per_call']:>11.4f} {r['attention_share']:>6.1%} "
              f"{r['gflops_per_object_cfg']:>28.2f} {r['gflops_per_call'] / frame['gflops_per_call']:>12.4f}")
    print(json.dumps({"model": args.model, "vae_factor": factor, "steps": args.steps, "rows": rows}))


if __name__ == "__main__":
    main()
