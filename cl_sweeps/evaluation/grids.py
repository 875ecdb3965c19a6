"""Sample grids people can read: tiny images (8x8 digits) enlarged with nearest-neighbour
scaling, so pixels stay sharp, and a caption saying which task, strategy and FID they show."""

from __future__ import annotations

import math

import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

MIN_GRID_PIXELS = 512  # the enlarged grid's width is at least this
CAPTION_FONT_PIXELS = 16


def grid_image(samples: torch.Tensor, caption: str, min_pixels: int = MIN_GRID_PIXELS) -> Image.Image:
    """Images in [-1, 1] (N, C, H, W) as a square-ish grid, scaled up by a whole factor so the
    grid is at least `min_pixels` wide, under a one-line caption on a white band."""
    nrow = max(1, math.isqrt(len(samples)))
    grid = make_grid((samples.detach().cpu().float() + 1) / 2, nrow=nrow, padding=1,
                     pad_value=1.0)
    pixels = (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(pixels if pixels.shape[2] == 3 else pixels[:, :, 0]).convert("RGB")
    scale = max(1, math.ceil(min_pixels / image.width))
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    font = ImageFont.load_default(size=CAPTION_FONT_PIXELS)
    band = CAPTION_FONT_PIXELS + 12
    canvas = Image.new("RGB", (image.width, image.height + band), "white")
    canvas.paste(image, (0, band))
    ImageDraw.Draw(canvas).text((6, 5), caption, fill="black", font=font)
    return canvas


def grid_caption(task_index: int, num_tasks: int, strategy: str, fid: float) -> str:
    return f"after task {task_index + 1}/{num_tasks} · {strategy} · FID {fid:.1f}"
