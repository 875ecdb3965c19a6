"""partial_generation_distillation: distil on the teacher's own partially generated states.

For each of the R = round(replay_ratio·B) replay images a timestep τ is drawn uniformly from
`replay_timesteps` (default U{0..999}). The teacher runs k = teacher_steps DDIM steps from pure
noise at t = 999 down to τ with a per-image stride of about (1000 − τ)/k (the reference's custom
`set_timesteps`; see `diffusion.sampling.partial_timesteps`). The state x̃_τ it reaches is the
input, without re-noising, and the target is the teacher's prediction there:
L_replay = ‖ε_φ(x̃_τ, τ) − ε_θ(x̃_τ, τ)‖².

Cost per iteration: student 3(B + R), teacher generation kR (every image takes k steps, one
batched teacher call per step), teacher targets R.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DModel

from cl_sweeps.evaluation.compute import TEACHER_GENERATION
from cl_sweeps.strategies.base import register
from cl_sweeps.strategies.catalog import GENERATION_KNOBS, TEACHER_KNOBS
from cl_sweeps.strategies.teacher import TeacherStrategy

NAME = "partial_generation_distillation"
KNOBS = GENERATION_KNOBS + TEACHER_KNOBS
SETTING = "both"  # unconditional and class-conditional models


@register
class PartialGenerationDistillation(TeacherStrategy):

    def replay_loss(self, model: UNet2DModel, n: int, like: torch.Tensor) -> torch.Tensor:
        tau = self.replay_timesteps(n)
        ctx = self.context
        labels = self.past_labels(n)
        with ctx.timer.phase("replay_generation"):
            states = ctx.sampler.partial(
                ctx.teacher,
                tau,
                self.config.teacher_steps,
                eta=self.config.teacher_eta,
                generator=ctx.generator,
                on_forward=ctx.counter.hook(TEACHER_GENERATION),
                labels=labels,
                guidance_scale=self.config.guidance_scale,
            )
        return self.distillation_loss(model, states, tau, labels)
