"""UNet FLOPs of the Stable Diffusion 1.5 inpainting architecture (no weights needed), and of the
tiny test model's architecture as a cross-check of unet_flops.py's ONNX count.

    venv/bin/python pipeline/diffusion/bench/sd15_unet_flops.py [--sizes 256,384,512]

Builds diffusers' UNet2DConditionModel from the published configuration on PyTorch's `meta`
device (shapes only: nothing is allocated or computed) and counts with
torch.utils.flop_counter.FlopCounterMode (matmul, convolution and attention FLOPs = 2 x MACs),
batch 1. Needs torch and diffusers (tests/reference/make_reference.py names tested versions).
"""
import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode
from diffusers import UNet2DConditionModel

# runwayml/stable-diffusion-inpainting unet/config.json (SD 1.5 inpainting): the diffusers
# defaults with 9 input channels and CLIP ViT-L/14's 768-wide text states.
SD15_INPAINT = dict(sample_size=64, in_channels=9, out_channels=4, layers_per_block=2,
                    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
                    attention_head_dim=8, norm_num_groups=32,
                    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
# ../shared/models/tiny-sd-inpaint/export_tiny_sd_inpaint.py
TINY = dict(sample_size=16, in_channels=9, out_channels=4, layers_per_block=1,
            block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
            attention_head_dim=8, norm_num_groups=8)


def gflops(config, latent, text_width):
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config).eval()
        sample = torch.empty(1, 9, latent, latent)
        t = torch.tensor([999])
        text = torch.empty(1, 77, text_width)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        unet(sample, t, text)
    return counter.get_total_flops() / 1e9


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="256,384,512")
    args = p.parse_args()
    print("tiny test UNet (VAE factor 2), batch 1:")
    for px in (64, 128, 256):
        print(f"  {px:>4} px (latent {px // 2:>3}): {gflops(TINY, px // 2, 32):10.4f} GFLOP per call")
    print("SD 1.5 inpainting UNet (VAE factor 8), batch 1:")
    ref = gflops(SD15_INPAINT, 64, 768)
    for px in [int(s) for s in args.sizes.split(",")]:
        g = gflops(SD15_INPAINT, px // 8, 768)
        print(f"  {px:>4} px (latent {px // 8:>3}): {g:10.1f} GFLOP per call, {g / ref:.3f} x 512 px")


if __name__ == "__main__":
    main()
