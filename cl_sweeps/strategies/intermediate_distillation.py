"""intermediate_distillation: distil on the states of the teacher's own k-step trajectory.

Beyond the paper: the "noisy intermediate generative distillation" of later work. The teacher
generates R' images with k = teacher_steps DDIM steps; every state x_{τ_i} it visits is fed to it
at its grid timestep τ_i, and that call's prediction ε_φ(x_{τ_i}, τ_i) is recorded. Those k
(state, timestep, prediction) triples per image ARE the training pairs:
L_replay = ‖ε_φ(x_{τ_i}, τ_i) − ε_θ(x_{τ_i}, τ_i)‖² — no re-noising and no extra teacher target
forward, so one k-step generation yields k pairs.

Pair count: with R = round(replay_ratio·B), R' = ceil(R / k) images are generated and all k·R'
pairs are used (between R and R + k − 1). With `replay_timesteps` = [low, high) narrowed, only
the k' grid points inside it are used (at least the nearest one); then R' = ceil(R / k') and the pairs are
k'·R', while generation still takes all k steps per image. Timesteps are the k-step grid's only
(e.g. k = 2 with trailing spacing trains at τ ∈ {999, 499}).

No SNR gating (`snr_threshold` is not read): its pairs are the states of one k-step trajectory,
which passes through the high-noise grid points on its way to the others anyway, and the state at
τ = 999 is already pure noise with no generation cost, so gating would save no forward.

Cost per iteration: student 3(B + k'·R'), teacher generation k·R'.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel

from cl_sweeps.strategies.base import register
from cl_sweeps.strategies.catalog import GENERATION_KNOBS, TEACHER_KNOBS
from cl_sweeps.strategies.teacher import TeacherStrategy

NAME = "intermediate_distillation"
KNOBS = GENERATION_KNOBS + TEACHER_KNOBS
SETTING = "both"  # unconditional and class-conditional models


@register
class IntermediateDistillation(TeacherStrategy):

    def replay_loss(self, model: UNet2DModel, n: int, like: torch.Tensor) -> torch.Tensor:
        kept = set(self.generation_grid().tolist())
        images = math.ceil(n / len(kept))
        points = [
            p for p in self.generate(images, return_trajectory=True).trajectory
            if p.timestep in kept
        ]
        x = torch.cat([p.states for p in points])
        t = torch.cat([torch.full((len(p.states),), p.timestep, device=x.device) for p in points])
        target = torch.cat([p.predictions for p in points])
        # each pair keeps the label its prediction was made for (no label dropout: the target
        # is the teacher's prediction at exactly that label)
        labels = None if points[0].labels is None else torch.cat([p.labels for p in points])
        return F.mse_loss(self.student(model, x, t, labels), target)
