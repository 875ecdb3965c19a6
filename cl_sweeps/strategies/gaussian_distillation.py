"""gaussian_distillation: distil the teacher on pure Gaussian noise, with no generation.

R = round(replay_ratio·B) inputs z ~ N(0, I) at timesteps τ drawn from `replay_timesteps`
(default all timesteps); target = the teacher's prediction: L_replay = ‖ε_φ(z, τ) − ε_θ(z, τ)‖².

Cost per iteration: student 3(B + R), teacher targets R.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DModel

from cl_sweeps.strategies.base import register
from cl_sweeps.strategies.catalog import TEACHER_KNOBS
from cl_sweeps.strategies.teacher import TeacherStrategy

NAME = "gaussian_distillation"
KNOBS = ("replay_ratio", "lambd", "weight_replay_loss", "replay_timesteps") + TEACHER_KNOBS
SETTING = "both"  # unconditional and class-conditional models


@register
class GaussianDistillation(TeacherStrategy):

    def replay_loss(self, model: UNet2DModel, n: int, like: torch.Tensor) -> torch.Tensor:
        z = torch.randn(
            (n, *like.shape[1:]), generator=self.context.generator, device=like.device,
            dtype=like.dtype,
        )
        return self.distillation_loss(model, z, self.replay_timesteps(n), self.past_labels(n))
