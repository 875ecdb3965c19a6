"""l2: a plain L2 penalty towards the previous task's parameters (CLoG's "L2" baseline).

L = ‖ε − ε_θ(x_τ, τ)‖² + l2_lambda · Σ_i (θ_i − θ*_i)², on the current task's data only, with θ*
the parameters at the end of the previous task. EWC, SI and MAS without an importance: every
parameter is held back equally, so it shows what their importance estimates buy. CLoG's code
sums the per-tensor *mean* of (θ − θ*)² instead of the sum over all parameters, which weighs a
small tensor (a bias) as much as a large kernel; here every parameter counts once.

Cost: student 3B per iteration, nothing at the end of a task; memory one parameter copy (θ*).
"""

from __future__ import annotations

from diffusers import UNet2DModel

from cl_sweeps.data.sources import ImageSet
from cl_sweeps.strategies.base import register
from cl_sweeps.strategies.penalty import AnchoredPenalty

NAME = "l2"
KNOBS = ("l2_lambda",)
SETTING = "both"  # unconditional and class-conditional models


@register
class L2(AnchoredPenalty):
    shares_task0 = True  # no penalty in task 0; the anchor comes from end_task
    strength_knob = "l2_lambda"

    def end_task(self, model: UNet2DModel, task_index: int, current: ImageSet) -> None:
        self.consolidate(model, None)
