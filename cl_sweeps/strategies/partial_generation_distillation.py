"""partial_generation_distillation: distil on the teacher's own partially generated states.

For each of the R = round(replay_ratio·B) replay images a stop timestep τ is drawn uniformly from
the teacher's k-step DDIM grid (k = teacher_steps; only grid points below `replay_start_timestep`
if set, at least the cleanest one). The teacher runs its reverse process from pure noise and stops
at τ: the state x̃_τ it reached is the input, without re-noising, and the target is the teacher's
prediction there: L_replay = ‖ε_φ(x̃_τ, τ) − ε_θ(x̃_τ, τ)‖².

τ lives on the k-step grid because a diffusers DDIM step goes from one grid point to the next and
cannot land on an arbitrary timestep; with k = 1000 every timestep is reachable.

Cost per iteration: student 3(B + R), teacher generation Σ_i (grid steps above τ_i) — between 0
and (k − 1)·R, (k − 1)·R/2 on average without `replay_start_timestep` — and teacher targets R.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DModel

from cl_sweeps.strategies.base import register
from cl_sweeps.strategies.catalog import GENERATION_KNOBS
from cl_sweeps.strategies.teacher import TeacherStrategy

NAME = "partial_generation_distillation"
KNOBS = GENERATION_KNOBS


@register
class PartialGenerationDistillation(TeacherStrategy):
    name = NAME
    knobs = KNOBS

    def replay_loss(self, model: UNet2DModel, n: int, like: torch.Tensor) -> torch.Tensor:
        grid = self.generation_grid()
        pick = torch.randint(
            0, len(grid), (n,), generator=self.context.generator, device=self.context.device
        )
        stop_at = grid[pick]
        partial = self.generate(n, stop_at=stop_at)
        return self.distillation_loss(model, partial.images, partial.timesteps)
