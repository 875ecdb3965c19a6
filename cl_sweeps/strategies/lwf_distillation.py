"""lwf_distillation: Learning-without-Forgetting on the current task's own noisy inputs.

The student's prediction on the real noisy batch x_τ = add_noise(x, ε, τ), τ ~ U{0..999}, gets
two targets: L_real = ‖ε − ε_θ(x_τ, τ)‖² and L_replay = ‖ε_φ(x_τ, τ) − ε_θ(x_τ, τ)‖². The one
student forward serves both. There are no replay images, so `replay_ratio` and
`replay_timesteps` are not read (the distillation inputs are the real ones, at their τ).

Cost per iteration: student 3B, teacher targets B.
"""

from __future__ import annotations

import torch.nn.functional as F
from diffusers import UNet2DModel

from cl_sweeps.data.sources import ImageSet
from cl_sweeps.strategies.base import LossOutput, register
from cl_sweeps.strategies.catalog import TEACHER_KNOBS
from cl_sweeps.strategies.teacher import TeacherStrategy

NAME = "lwf_distillation"
KNOBS = ("lambd", "weight_replay_loss") + TEACHER_KNOBS
SETTING = "both"  # unconditional and class-conditional models


@register
class LwFDistillation(TeacherStrategy):

    def loss(self, model: UNet2DModel, batch: ImageSet) -> LossOutput:
        x0 = batch.images
        noise = self.random_noise(x0)
        t = self.random_timesteps(x0.shape[0])
        x_t = self.context.scheduler.add_noise(x0, noise, t)
        labels = self.training_labels(batch.labels)  # the same for both targets
        prediction = self.student(model, x_t, t, labels)
        real = F.mse_loss(prediction, noise)
        if self.context.teacher is None:
            return self.combine(real, None)
        return self.combine(real, F.mse_loss(prediction, self.teacher_prediction(x_t, t, labels)))
