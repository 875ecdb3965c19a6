"""mas: Memory Aware Synapses (Aljundi et al., 2018), as CLoG adapts it to diffusion models.

L = ‖ε − ε_θ(x_τ, τ)‖² + mas_lambda · Σ_i Ω_i (θ_i − θ*_i)², on the current task's data only.

Ω is the sensitivity of the model's output to each parameter, needing no labels or loss: at the
end of every task, on `importance_samples` images of that task, each noised to x_τ at a fresh
τ ~ U{0..999}, Ω_i = mean over images of |∂ ‖ε_θ(x_τ, τ)‖² / ∂θ_i| (the squared L2 norm of the
whole predicted noise, one image per backward, as the MAS paper); added to the running sum, and θ*
becomes the parameters at the end of the task. CLoG's code instead takes the gradient of a batch
sum of row norms (not squared) and accumulates it over the whole training set without zeroing
between batches; the per-image form here is the paper's and does not grow with the data size.

Cost: student 3B per iteration, plus 3·importance_samples student forwards (forward + backward,
counted as `student_train`) at the end of each task; memory two parameter copies (Ω, θ*).
"""

from __future__ import annotations

import torch
from diffusers import UNet2DModel

from cl_sweeps.data.sources import ImageSet
from cl_sweeps.strategies.base import register
from cl_sweeps.strategies.penalty import AnchoredPenalty, Tensors, trainable_parameters

NAME = "mas"
KNOBS = ("mas_lambda",)
SETTING = "both"  # unconditional and class-conditional models


@register
class MAS(AnchoredPenalty):
    shares_task0 = True  # no penalty in task 0; Ω comes from end_task
    strength_knob = "mas_lambda"
    importance_samples: int = 128  # images per estimate (fewer if the task has fewer)

    def end_task(self, model: UNet2DModel, task_index: int, current: ImageSet) -> None:
        self.consolidate(model, self.output_sensitivity(model, current))

    def output_sensitivity(self, model: UNet2DModel, data: ImageSet) -> Tensors:
        """Mean over images of |∂‖ε_θ(x_τ, τ)‖²/∂θ|, one image per backward."""
        ctx = self.context
        params = trainable_parameters(model)
        omega = {name: torch.zeros_like(p) for name, p in params.items()}
        count = min(self.importance_samples, len(data))
        pick = torch.randperm(len(data), generator=ctx.generator, device=ctx.device)[:count]
        images = data.images[pick.to(data.images.device)].to(ctx.device)
        labels = data.labels[pick.to(data.labels.device)].to(ctx.device)
        for i in range(count):
            x0 = images[i : i + 1]
            t = self.random_timesteps(1)
            x_t = ctx.scheduler.add_noise(x0, self.random_noise(x0), t)
            y = self.training_labels(labels[i : i + 1])
            norm = self.student(model, x_t, t, y).pow(2).sum()
            grads = torch.autograd.grad(norm, list(params.values()), allow_unused=True)
            for name, grad in zip(params, grads):
                if grad is not None:
                    omega[name] += grad.detach().abs() / count
        return omega
