"""Rewrites the tiny inpainting model into the other export conventions the pipeline supports, so
the test can check both against the original (python3 -m pip install onnx):

    python3 convert_conventions.py SRC_DIR DST_DIR

- unet/model.onnx: `timestep` becomes a scalar float32; the graph casts it to int64 and expands it
  to the batch, so the network computes exactly what the original computes for integer timesteps.
- vae_encoder/model.onnx: returns `latent_parameters` = concat(mean, logvar) over channels (logvar
  a constant -7 here) instead of `latent_sample`; the pipeline takes the mean.

The other files are linked from SRC_DIR.
"""
import os
import sys

import onnx
from onnx import TensorProto, helper

src, dst = sys.argv[1], sys.argv[2]
for name in ["text_encoder", "tokenizer", "vae_decoder", "scheduler_config.json"]:
    os.symlink(os.path.join(src, name), os.path.join(dst, name))

# UNet: scalar float timestep -> Cast(int64) -> Expand to [batch] -> the original consumers.
unet = onnx.load(os.path.join(src, "unet", "model.onnx"))
g = unet.graph
old = next(i for i in g.input if i.name == "timestep")
g.input.remove(old)
g.input.insert(1, helper.make_tensor_value_info("timestep", TensorProto.FLOAT, []))
for node in g.node:
    node.input[:] = ["timestep_batch" if i == "timestep" else i for i in node.input]
g.node.insert(0, helper.make_node("Cast", ["timestep"], ["timestep_int"], to=TensorProto.INT64))
g.node.insert(1, helper.make_node("Shape", ["sample"], ["sample_shape"], start=0, end=1))
g.node.insert(2, helper.make_node("Expand", ["timestep_int", "sample_shape"], ["timestep_batch"]))
onnx.checker.check_model(unet)
os.makedirs(os.path.join(dst, "unet"))
onnx.save(unet, os.path.join(dst, "unet", "model.onnx"))

# VAE encoder: latent_parameters = concat(mean, -7) over channels.
enc = onnx.load(os.path.join(src, "vae_encoder", "model.onnx"))
g = enc.graph
out = g.output[0]
g.output.remove(out)
g.node.extend([
    helper.make_node("Mul", ["latent_sample", "zero"], ["zeros"]),
    helper.make_node("Add", ["zeros", "minus_seven"], ["logvar"]),
    helper.make_node("Concat", ["latent_sample", "logvar"], ["latent_parameters"], axis=1),
])
g.initializer.extend([
    helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
    helper.make_tensor("minus_seven", TensorProto.FLOAT, [], [-7.0]),
])
g.output.append(helper.make_tensor_value_info("latent_parameters", TensorProto.FLOAT, ["b", 8, "h", "w"]))
onnx.checker.check_model(enc)
os.makedirs(os.path.join(dst, "vae_encoder"))
onnx.save(enc, os.path.join(dst, "vae_encoder", "model.onnx"))
