"""ewc: Elastic Weight Consolidation (Kirkpatrick et al., 2017), online form with γ = 1.

L = ‖ε − ε_θ(x_τ, τ)‖² + ewc_lambda · Σ_i F_i (θ_i − θ*_i)², on the current task's data only.

At the end of every task the diagonal (empirical) Fisher of the denoising loss is estimated on
`fisher_samples` images of that task, one image per backward — F_i = mean over images of
(∂ℓ/∂θ_i)², with ℓ the denoising loss at a fresh τ ~ U{0..999} and ε per image — and added to the
running sum; θ* becomes the parameters at the end of that task. Summing the Fishers with a single
anchor (online EWC, Schwarz et al. 2018, with decay γ = 1) keeps memory at two parameter copies
instead of two per task. There is no ½ in the penalty: ewc_lambda absorbs it.

Cost: student 3B per iteration, plus 3·fisher_samples student forwards (forward + backward,
counted as `student_train`) at the end of each task.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DModel

from cl_sweeps.data.sources import ImageSet
from cl_sweeps.strategies.base import register
from cl_sweeps.strategies.penalty import AnchoredPenalty, trainable_parameters

NAME = "ewc"
KNOBS = ("ewc_lambda",)
SETTING = "both"  # unconditional and class-conditional models


@register
class EWC(AnchoredPenalty):
    shares_task0 = True  # no penalty in task 0; the Fisher comes from end_task
    strength_knob = "ewc_lambda"
    fisher_samples: int = 128  # images per Fisher estimate (fewer if the task has fewer)

    def end_task(self, model: UNet2DModel, task_index: int, current: ImageSet) -> None:
        self.consolidate(model, self.fisher(model, current))

    def fisher(self, model: UNet2DModel, data: ImageSet) -> dict[str, torch.Tensor]:
        """Diagonal empirical Fisher of the denoising loss, from per-image gradients."""
        ctx = self.context
        params = trainable_parameters(model)
        fisher = {name: torch.zeros_like(p) for name, p in params.items()}
        count = min(self.fisher_samples, len(data))
        pick = torch.randperm(len(data), generator=ctx.generator, device=ctx.device)[:count]
        images = data.images[pick.to(data.images.device)].to(ctx.device)
        labels = data.labels[pick.to(data.labels.device)].to(ctx.device)
        for i in range(count):
            loss = self.denoising_loss(model, images[i : i + 1], labels[i : i + 1])
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for name, grad in zip(params, grads):
                if grad is not None:
                    fisher[name] += grad.detach().pow(2) / count
        return fisher
