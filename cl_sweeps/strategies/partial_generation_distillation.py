"""partial_generation_distillation: distil on the teacher's own partially generated states.

For each of the R = round(replay_ratio·B) replay images a timestep τ is drawn uniformly from
`replay_timesteps` (default U{0..999}). The teacher runs k = teacher_steps DDIM steps from pure
noise at t = 999 down to τ with a per-image stride of about (1000 − τ)/k (the reference's custom
`set_timesteps`; see `diffusion.sampling.partial_timesteps`). The state x̃_τ it reaches is the
input, without re-noising, and the target is the teacher's prediction there:
L_replay = ‖ε_φ(x̃_τ, τ) − ε_θ(x̃_τ, τ)‖².

SNR-gated generation (`snr_threshold` > 0, the gate of `generative_distillation`, shared through
`TeacherStrategy`): of the R pairs, G = round(R·(high − τ_s)/(high − low)) have τ ~ U[τ_s, high),
where SNR(τ) = ᾱ_τ/(1 − ᾱ_τ) is below the threshold, and take pure noise z ~ N(0, I) as input with
no generation steps (the state the teacher would reach there is almost all noise); the other
R − G have τ ~ U[low, τ_s) and are partially generated as above.

Cost per iteration: student 3(B + R), teacher generation k·(R − G) (every generated image takes
k steps, one batched teacher call per step), teacher targets R (G = 0 without gating).
"""

from __future__ import annotations

import torch
from diffusers import UNet2DModel

from cl_sweeps.evaluation.compute import TEACHER_GENERATION
from cl_sweeps.strategies.base import register
from cl_sweeps.strategies.catalog import GENERATION_KNOBS, TEACHER_KNOBS
from cl_sweeps.strategies.teacher import ReplayPairs, TeacherStrategy, joined

NAME = "partial_generation_distillation"
KNOBS = GENERATION_KNOBS + TEACHER_KNOBS + ("snr_threshold",)
SETTING = "both"  # unconditional and class-conditional models


@register
class PartialGenerationDistillation(TeacherStrategy):

    def replay_loss(self, model: UNet2DModel, n: int, like: torch.Tensor) -> torch.Tensor:
        gated = self.gated_count(n)
        if gated == 0:
            return self.distillation_loss(model, *self.partial_pairs(self.replay_timesteps(n)))
        parts = [self.partial_pairs(self.ungated_timesteps(n - gated))] if gated < n else []
        parts.append(self.gated_pairs(gated, like))
        return self.distillation_loss(model, *joined(parts))

    def partial_pairs(self, tau: torch.Tensor) -> ReplayPairs:
        """The teacher's states x̃_τ, k DDIM steps from pure noise down to each τ (timed as
        `replay_generation`, counted as teacher generation), at τ, with past classes' labels."""
        ctx = self.context
        labels = self.past_labels(len(tau))
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
        return states, tau, labels
