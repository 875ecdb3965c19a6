"""The common base of the strategies that learn from the frozen teacher.

The engine sets `context.teacher` at the start of every task t > 0 to one frozen copy of the model
as it was at the end of task t − 1 (eval mode, no gradients), so memory holds one teacher
whatever the number of tasks. On task 0 there is no teacher and every teacher strategy trains
like `naive` (real loss only).

`teacher: frozen` (the paper's) never updates that copy during the task. `teacher: ema` (MAGD's
EMA teacher) moves it towards the student after every optimiser step, φ ← d·φ + (1 − d)·θ with
d = `ema_decay`: the teacher starts each task as the frozen one and then follows the student
slowly, so it keeps the past while it picks up what the current task has already taught. d = 1
is the frozen teacher. The EMA restarts from the student at every task boundary (the engine's
copy), so a task checkpoint holds no EMA state and a resumed run is exact. Its cost is one
lerp over the parameters per iteration, no UNet forward: each update is counted
(`forwards_ema_update`) and priced at 3 FLOPs per parameter (`ema_update_flops`) in
`train_tflops`, and timed in `train_seconds`.

SNR-gated generation (`snr_threshold` > 0; read by `generative_distillation`, its subclass
`class_guided_distillation` and `partial_generation_distillation`): the pairs whose τ falls where
SNR(τ) = ᾱ_τ/(1 − ᾱ_τ) is below the threshold, [τ_s, high), take pure noise as input and need no
generation; `gate_start`, `gated_count` and `gated_pairs` below are the one rule they share.

Per iteration with B real images a strategy adds R = round(replay_ratio · B) replay pairs:

    L = w_real · L_real + w_replay · λ · L_replay      (base `Strategy.combine`)

Every UNet image-forward is counted where it is spent: student forwards (with backward) by
`Strategy.student`, teacher generation through the sampler's `on_forward` hook (timed as the
`replay_generation` phase), teacher targets by `Strategy.teacher_prediction`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from torch import nn

from cl_sweeps.data.sources import ImageSet
from cl_sweeps.diffusion.sampling import SampleResult
from cl_sweeps.evaluation.compute import EMA_UPDATE, TEACHER_GENERATION
from cl_sweeps.strategies.base import LossOutput, Strategy

ReplayPairs = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]  # inputs, τ, labels


class TeacherStrategy(Strategy):
    """Real loss on the minibatch plus a replay/distillation loss on R pairs from the teacher.

    Subclasses implement `replay_loss(model, n, like)`: form n replay pairs (inputs, timesteps,
    targets) and return the student's mean squared error on them.
    """

    needs_teacher = True
    shares_task0 = True  # no teacher in task 0: the real loss alone, as naive

    def loss(self, model: UNet2DModel, batch: ImageSet) -> LossOutput:
        real = self.denoising_loss(model, batch.images, batch.labels)
        n_replay = self.replay_batch_size(len(batch))
        if self.context.teacher is None or n_replay == 0:
            return self.combine(real, None)
        return self.combine(real, self.replay_loss(model, n_replay, batch.images))

    def replay_loss(self, model: UNet2DModel, n: int, like: torch.Tensor) -> torch.Tensor:
        """The replay loss on `n` pairs; `like` is the real minibatch (for shape and dtype)."""
        raise NotImplementedError

    @torch.no_grad()
    def after_optimizer_step(self, model: UNet2DModel) -> None:
        """teacher: ema — move the teacher towards the student: φ ← d·φ + (1 − d)·θ, counted
        as one EMA update (priced in `train_tflops`)."""
        kind, decay = self.config.teacher, self.config.ema_decay
        teacher = self.context.teacher
        if kind != "ema" or teacher is None or decay == 1.0:
            return
        update_ema(teacher, model, decay)
        self.context.counter.add(EMA_UPDATE, 1)

    # --- building blocks ------------------------------------------------------------------
    def generate(
        self,
        n: int,
        *,
        return_trajectory: bool = False,
    ) -> SampleResult:
        """Run the teacher's k-step DDIM (k = teacher_steps, eta = teacher_eta) for n images,
        timed as `replay_generation` and counted as teacher generation forwards. A conditional
        teacher generates n classes drawn from past tasks' (`past_labels`, in `result.labels`)
        with classifier-free guidance `guidance_scale` (2 forwards per image and step unless
        it is 0 or 1)."""
        ctx = self.context
        labels = self.past_labels(n)
        with ctx.timer.phase("replay_generation"):
            return ctx.sampler.sample(
                ctx.teacher,
                n,
                self.config.teacher_steps,
                eta=self.config.teacher_eta,
                generator=ctx.generator,
                return_trajectory=return_trajectory,
                on_forward=ctx.counter.hook(TEACHER_GENERATION),
                labels=labels,
                guidance_scale=self.config.guidance_scale,
            )

    def renoise(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x_τ = add_noise(x0, ε', τ) with τ from `replay_timesteps`; returns (x_τ, τ, ε')."""
        noise = self.random_noise(x0)
        t = self.replay_timesteps(x0.shape[0])
        return self.context.scheduler.add_noise(x0, noise, t), t, noise

    def distillation_loss(
        self,
        model: UNet2DModel,
        x: torch.Tensor,
        t: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """‖ε_φ(x, t[, y]) − ε_θ(x, t[, y])‖²: the student matches the teacher on the same
        inputs and, for a conditional model, the same labels (after label dropout: a dropped
        pair distils the teacher's unconditional prediction)."""
        y = self.training_labels(labels)
        target = self.teacher_prediction(x, t, y)
        return F.mse_loss(self.student(model, x, t, y), target)

    # --- SNR-gated generation (snr_threshold; after MAGD's SNR-guided generation) ---------
    _gate_start: int | None = None  # τ_s, found on first use

    def gate_start(self) -> int:
        """τ_s: the first timestep of `replay_timesteps` whose SNR ᾱ_τ/(1 − ᾱ_τ) is below
        `snr_threshold` (the range's end if none is, so nothing is gated). SNR falls with τ, so
        the gated range is [τ_s, high). Found once: the schedule is fixed."""
        if self._gate_start is None:
            low, high = self.config.replay_timesteps
            abar = self.context.scheduler.alphas_cumprod[low:high].double().cpu()
            below = (abar / (1 - abar) < self.config.snr_threshold).nonzero()
            self._gate_start = low + int(below[0]) if len(below) else high
        return self._gate_start

    def gated_count(self, n: int) -> int:
        """G of n replay pairs that are gated: their share of `replay_timesteps` = [low, high)
        that lies in [τ_s, high), G = round(n·(high − τ_s)/(high − low)). The other n − G
        take τ ~ U[low, τ_s) and are generated, so τ stays uniform over the range in
        expectation; the split is fixed, so no host sync decides how many images to generate."""
        low, high = self.config.replay_timesteps
        return round(n * (high - self.gate_start()) / (high - low))

    def ungated_timesteps(self, n: int) -> torch.Tensor:
        """n timesteps τ ~ U[low, τ_s): those of the pairs that are generated under gating."""
        return self.random_timesteps(n, self.config.replay_timesteps[0], self.gate_start())

    def gated_pairs(self, n: int, like: torch.Tensor) -> ReplayPairs:
        """n gated pairs, no generation: inputs z ~ N(0, I) shaped as one image of `like`, at
        τ ~ U[τ_s, high), labelled with past classes (None for an unconditional model). At
        such τ a generated image hardly shows in its noised version (under zero terminal SNR,
        at τ = 999 not at all)."""
        x = self.random_noise(like[:1].expand(n, *like.shape[1:]))
        t = self.random_timesteps(n, self.gate_start(), self.config.replay_timesteps[1])
        return x, t, self.past_labels(n)

    def generation_grid(self) -> torch.Tensor:
        """The teacher's k-step DDIM grid (noisiest first), restricted to the points inside
        `replay_timesteps` = [low, high); if none is, the point nearest to that range is kept, so
        the grid is never empty. On the host, where the scheduler keeps it: selecting from it
        there costs no device sync."""
        grid = self.context.sampler.timesteps(self.config.teacher_steps)
        low, high = self.config.replay_timesteps
        kept = grid[(grid >= low) & (grid < high)]
        if len(kept):
            return kept
        distance = torch.where(grid < low, low - grid, grid - (high - 1))
        return grid[distance.argmin()].unsqueeze(0)


@torch.no_grad()
def update_ema(average: nn.Module, model: nn.Module, decay: float) -> None:
    """In place, parameter by parameter (same names): average ← decay·average + (1−decay)·model.
    Buffers (none in a UNet2DModel) are copied."""
    params = dict(model.named_parameters())
    for name, target in average.named_parameters():
        target.lerp_(params[name].detach().to(target.dtype), 1.0 - decay)
    buffers = dict(model.named_buffers())
    for name, target in average.named_buffers():
        target.copy_(buffers[name])


def joined(parts: list[ReplayPairs]) -> ReplayPairs:
    """Replay pairs concatenated in order (labels None for an unconditional model)."""
    labels = [y for _, _, y in parts]
    return (
        torch.cat([x for x, _, _ in parts]),
        torch.cat([t for _, t, _ in parts]),
        None if labels[0] is None else torch.cat(labels),
    )
