"""agem: Averaged Gradient Episodic Memory (Chaudhry et al., 2019), a CLoG baseline.

The loss is the ordinary diffusion loss on the current minibatch; its gradient g is then
corrected before the optimiser step so that it does not increase the loss on an episodic memory
of real images from past tasks. Each iteration draws R = round(replay_ratio·B) memory images and
takes the gradient g_ref of their diffusion loss; if g·g_ref < 0, g is projected to
g − (g·g_ref / g_ref·g_ref) g_ref, whose dot product with g_ref is zero; otherwise g is kept. The
projection is taken on the device (no host sync) and before clipping; it is linear in g, so the
fp16 gradient scale passes through it unchanged. The memory is ER's: at most `memory_size` real
images, an equal share per class seen so far, rebuilt at the end of every task.

CLoG's code never zeroes the gradient between the current and the memory backward, so its
"memory gradient" is g + g_ref; here g_ref is the memory's gradient alone, as in the A-GEM paper.

Cost per iteration: student 3B, plus 3R for the memory gradient (counted as `student_train`).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import UNet2DModel

from cl_sweeps.data.sources import ImageSet
from cl_sweeps.strategies.base import LossOutput, register
from cl_sweeps.strategies.er import ExperienceReplay
from cl_sweeps.strategies.penalty import trainable_parameters

NAME = "agem"
KNOBS = ("replay_ratio", "memory_size")
SETTING = "both"  # unconditional and class-conditional models


@register
class AGEM(ExperienceReplay):
    shares_task0 = True  # no memory in task 0: the real loss alone, as naive

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.reference: list[torch.Tensor | None] | None = None  # g_ref of this iteration

    def loss(self, model: UNet2DModel, batch: ImageSet) -> LossOutput:
        """The real loss; with a memory, also the memory gradient g_ref (the engine backpropagates
        the loss, then `adjust_gradients` projects)."""
        real = self.denoising_loss(model, batch.images, batch.labels)
        n_memory = self.replay_batch_size(len(batch))
        if self.memory is None or n_memory == 0:
            return LossOutput(real, {"loss_real": real.detach()})
        images, labels = self.memory_on_device()
        pick = torch.randint(
            0, len(self.memory), (n_memory,), generator=self.context.generator,
            device=self.context.device,
        )
        memory_loss = self.denoising_loss(model, images[pick], labels[pick])
        params = list(trainable_parameters(model).values())
        self.reference = list(torch.autograd.grad(memory_loss, params, allow_unused=True))
        return LossOutput(real, {"loss_real": real.detach(), "loss_memory": memory_loss.detach()})

    @torch.no_grad()
    def adjust_gradients(self, model: UNet2DModel) -> None:
        if self.reference is None:
            return
        pairs = [
            (p.grad, ref) for p, ref in zip(trainable_parameters(model).values(), self.reference)
            if p.grad is not None and ref is not None
        ]
        self.reference = None
        grads, refs = [g for g, _ in pairs], [r for _, r in pairs]
        project_onto_halfspace(grads, refs)


def project_onto_halfspace(grads: list[torch.Tensor], refs: list[torch.Tensor]) -> None:
    """In place: g ← g − min(0, g·r)/(r·r) · r, over all tensors as one vector, so that the
    result has a non-negative dot product with r (unchanged where it had one already)."""
    dot = sum((g.float() * r.float()).sum() for g, r in zip(grads, refs))
    norm2 = sum(r.float().pow(2).sum() for r in refs)
    coefficient = torch.clamp(dot, max=0.0) / norm2.clamp(min=torch.finfo(torch.float32).tiny)
    for g, r in zip(grads, refs):
        g.sub_((coefficient * r).to(g.dtype))


