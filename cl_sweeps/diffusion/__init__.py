"""The diffusion model (diffusers UNet2DModel presets), its noise schedule and DDIM sampling."""

from cl_sweeps.diffusion.model import build_scheduler, build_unet, unet_kwargs
from cl_sweeps.diffusion.sampling import DDIMSampler, SampleResult

__all__ = ["DDIMSampler", "SampleResult", "build_scheduler", "build_unet", "unet_kwargs"]
