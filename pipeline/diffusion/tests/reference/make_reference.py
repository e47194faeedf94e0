"""Reference values for roadsynth-diffusion's scheduler and tokenizer tests, computed by diffusers
and transformers themselves (not by a re-implementation).

    python3 -m venv venv && venv/bin/pip install torch==2.15.0 diffusers==0.42.1 transformers==5.23.0 numpy
    venv/bin/python pipeline/diffusion/tests/reference/make_reference.py

writes schedulers.json and tokenizer.json beside this file. The tokenizer part reads the shared
tiny model's tokenizer (ROADSYNTH_SHARED, default ../shared beside the repository).

Schedulers: for each configuration x sampler x step count, the timesteps, noise levels, and one
step from fixed random inputs at every index (model output, sample and noise are stored, so the
Rust test feeds the same numbers). LCM draws its noise inside `step`; it is injected by replacing
the module's `randn_tensor`, the only randomness it uses.
"""
import json
import os
import sys
import tempfile

import numpy as np
import torch
import diffusers
import transformers
from diffusers import DDIMScheduler, EulerDiscreteScheduler, LCMScheduler
import diffusers.schedulers.scheduling_lcm as lcm_module

HERE = os.path.dirname(os.path.abspath(__file__))
N = 8  # values per test vector

CONFIGS = {
    # Stable Diffusion's inpainting scheduler (the tiny model's scheduler_config.json).
    "sd": {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
           "num_train_timesteps": 1000, "clip_sample": False, "set_alpha_to_one": False,
           "steps_offset": 1, "prediction_type": "epsilon"},
    "linear_v_trailing": {"beta_schedule": "linear", "prediction_type": "v_prediction",
                          "timestep_spacing": "trailing", "clip_sample": False,
                          "set_alpha_to_one": True},
    "cosine_sample_linspace": {"beta_schedule": "squaredcos_cap_v2", "prediction_type": "sample",
                               "timestep_spacing": "linspace", "clip_sample": True,
                               "set_alpha_to_one": False, "steps_offset": 0},
    # LCM's boundary scalings are ~(0, 1) at SD timesteps with the default timestep_scaling 10;
    # a small scaling makes c_skip and c_out matter, and a short distillation schedule.
    "sd_lcm_scaled": {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                      "set_alpha_to_one": False, "steps_offset": 1, "timestep_scaling": 0.005,
                      "original_inference_steps": 20},
    "sd_leading_euler": {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                         "timestep_spacing": "leading", "steps_offset": 1},
}
KINDS = {
    "ddim": (DDIMScheduler, {}),
    "ddim_eta": (DDIMScheduler, {"eta": 0.5}),
    "lcm": (LCMScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
}


def f32(a):
    return [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]


def scheduler_cases():
    cases = []
    rng = np.random.default_rng(20261125)
    for config_name, config in CONFIGS.items():
        for kind, (cls, extra) in KINDS.items():
            for steps in (1, 4, 7, 20 if config.get("original_inference_steps") == 20 else 50):
                s = cls.from_config(config)
                s.set_timesteps(steps)
                case = {
                    "config_name": config_name, "config": config, "kind": kind, "eta": extra.get("eta", 0.0),
                    "steps": steps,
                    "timesteps": [float(t) for t in s.timesteps.numpy()],
                    "init_noise_sigma": float(s.init_noise_sigma),
                }
                if kind == "euler":
                    case["sigmas"] = f32(s.sigmas.numpy())
                if steps == 50:  # schedule only
                    cases.append(case)
                    continue
                step_cases = []
                sigma0 = float(s.init_noise_sigma)
                for i, t in enumerate(s.timesteps):
                    sample = (rng.standard_normal(N) * sigma0).astype(np.float32)
                    model_output = rng.standard_normal(N).astype(np.float32)
                    noise = rng.standard_normal(N).astype(np.float32)
                    original = rng.standard_normal(N).astype(np.float32)
                    # The scheduler's step index must be i: start it there as a pipeline does.
                    s._step_index = i
                    scaled = s.scale_model_input(torch.from_numpy(sample), t)
                    s._step_index = i
                    if kind.startswith("ddim"):
                        out = s.step(torch.from_numpy(model_output), t, torch.from_numpy(sample),
                                     eta=extra.get("eta", 0.0),
                                     variance_noise=torch.from_numpy(noise) if extra.get("eta") else None)
                        uses_noise = bool(extra.get("eta"))
                    elif kind == "lcm":
                        lcm_module.randn_tensor = lambda *a, **k: torch.from_numpy(noise)
                        out = s.step(torch.from_numpy(model_output), t, torch.from_numpy(sample))
                        uses_noise = i != steps - 1
                    else:
                        out = s.step(torch.from_numpy(model_output), t, torch.from_numpy(sample))
                        uses_noise = False
                    if kind == "euler":
                        # As img2img does before the first step: noise to the sigma of index i.
                        s._step_index = None
                        s.set_begin_index(i)
                    noised = s.add_noise(torch.from_numpy(original), torch.from_numpy(noise),
                                         s.timesteps[i:i + 1])
                    if kind == "euler":
                        s._begin_index = None
                    step_cases.append({
                        "index": i, "sample": f32(sample), "model_output": f32(model_output),
                        "noise": f32(noise) if uses_noise else None,
                        "prev_sample": f32(out.prev_sample.numpy()),
                        "scaled_input": f32(scaled.numpy()),
                        "original": f32(original), "add_noise_noise": f32(noise), "noised": f32(noised.numpy()),
                    })
                case["steps_detail"] = step_cases
                cases.append(case)
    alphas = {name: f32(DDIMScheduler.from_config(c).alphas_cumprod.numpy()) for name, c in CONFIGS.items()}
    return {"generator": f"diffusers {diffusers.__version__}, torch {torch.__version__}",
            "alphas_cumprod": alphas, "cases": cases}


PROMPTS = [
    "a red car on the road",
    "A  Pedestrian,\tcrossing the street!",
    "",
    "cafe 1996 night, rain",
    " ".join(["the car"] * 60),  # longer than 77 tokens: truncated
]


def tokenizer_cases():
    shared = os.environ.get("ROADSYNTH_SHARED", os.path.join(HERE, "../../../../../shared"))
    path = os.path.join(shared, "models/tiny-sd-inpaint/tokenizer/tokenizer.json")
    spec = json.load(open(path))
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(path)
    pad = tok.token_to_id("<|endoftext|>")
    tok.enable_truncation(77)
    tok.enable_padding(length=77, pad_id=pad, pad_token="<|endoftext|>")
    json_ids = [tok.encode(p).ids for p in PROMPTS]
    # The legacy layout: vocab.json + merges.txt, as the Rust test writes them from tokenizer.json.
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "vocab.json"), "w") as f:
            json.dump(spec["model"]["vocab"], f)
        with open(os.path.join(d, "merges.txt"), "w") as f:
            f.write("#version: 0.2\n")
            for m in spec["model"]["merges"]:
                f.write((m if isinstance(m, str) else " ".join(m)) + "\n")
        clip = transformers.CLIPTokenizer.from_pretrained(d, model_max_length=77)
        legacy_ids = [clip(p, padding="max_length", max_length=77, truncation=True).input_ids
                      for p in PROMPTS]
    return {"generator": f"transformers {transformers.__version__} CLIPTokenizer (legacy files); "
                         f"tokenizers Tokenizer.from_file (tokenizer.json)",
            "prompts": PROMPTS, "tokenizer_json_ids": json_ids, "legacy_ids": legacy_ids}


if __name__ == "__main__":
    with open(os.path.join(HERE, "schedulers.json"), "w") as f:
        json.dump(scheduler_cases(), f, separators=(",", ":"))
    with open(os.path.join(HERE, "tokenizer.json"), "w") as f:
        json.dump(tokenizer_cases(), f, indent=1)
    print("wrote", HERE, file=sys.stderr)
