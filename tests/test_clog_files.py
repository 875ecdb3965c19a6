"""The shipped CLoG files run CLoG's protocol where cl-sweeps can express it.

The settings below are read from CLoG's public code (GitHub linhaowei1/CLoG):
scripts/cifar-naive.sh (epochs, batch, lr, weight decay 0, seed), utils/configs.py (memory 200,
inference steps 50, the method list and the SI/MAS/KD weights), networks/diffusion/ddim.py
(DDIMScheduler defaults: no zero-terminal-SNR rescale, clipped x0, leading timesteps) and
lora_ddim.py (rank 8, alpha 8, the adapted modules), approaches/eval.py (2,048 samples per task),
dataloader/seq.py (class order 0: 0..9), dataloader/data.py (FM resized to 32x32).
What the files cannot match is listed in their header tables.
"""

from __future__ import annotations

import pytest
from test_paper_files import _dotted, _trials

# CLoG's methods (utils/configs.py ModelArguments.method) -> cl-sweeps strategy, plus the
# paper's generative distillation
CLOG_METHODS = {
    "naive": "naive", "noncl": "cumulative", "er": "er", "agem": "agem",
    "generative_replay": "generative_replay", "l2": "l2", "ewc": "ewc", "si": "si", "mas": "mas",
    "kd": "lwf_distillation", "lora": "lora", "ensemble": "ensemble",
}
CLOG_SETTINGS = {
    "data.num_tasks": 5,
    "data.class_order": tuple(range(10)),
    "model.preset": "paper_cifar",  # the 32x32 UNet (block channels 128, 256, 256, 256)
    "model.conditional": True,  # num_class_embeds: label-conditioned
    "model.zero_terminal_snr": False,
    "model.clip_sample": True,
    "model.timestep_spacing": "leading",
    "train.epochs_per_task": 200,
    "train.batch_size": 256,
    "train.last_partial_batch": True,
    "train.lr": 2e-4,
    "train.grad_clip": 1.0,
    "train.reset_optimizer": True,
    "train.precision": "fp32",
    "strategy.memory_size": 200,
    "strategy.replay_ratio": 1.0,
    "strategy.si_c": 5.0,
    "strategy.mas_lambda": 5.0,
    "strategy.lora_rank": 8,
    "strategy.lora_alpha": 8.0,
    "evaluation.n_eval_samples": 5 * 2048,
    "evaluation.eval_steps": 50,
    "evaluation.fid_features": "inception",
}
BY_STRATEGY = {  # (teacher_steps, lambd, weight_replay_loss) where a strategy reads them
    "generative_replay": (50, 1.0, False),
    "lwf_distillation": (None, 1.0, False),  # kd_weight 1, added to the plain loss
    "er": (None, 1.0, False),
    "generative_distillation": (2, 0.75, True),  # the paper's own settings
}


@pytest.mark.parametrize("file,dataset", [
    ("clog_fmnist.yaml", "fashion_mnist"), ("clog_cifar10.yaml", "cifar10"),
])
def test_clog_file_runs_clogs_methods_with_its_settings(file, dataset) -> None:
    sweep, configs = _trials(file)
    names = [c.strategy.name for c in configs]
    assert sorted(names) == sorted([*CLOG_METHODS.values(), "generative_distillation"])
    assert sweep.seeds == [42, 69, 1714] and sweep.search_algorithm.name == "grid"
    for config in configs:
        assert config.data.dataset == dataset and config.data.resolved_image_size() == 32
        for key, expected in CLOG_SETTINGS.items():
            actual = _dotted(config, key)
            actual = tuple(actual) if isinstance(actual, list) else actual
            assert actual == expected, f"{file}: {config.strategy.name}: {key}"
        strategy = config.strategy
        if strategy.name in BY_STRATEGY:
            steps, lambd, weighted = BY_STRATEGY[strategy.name]
            assert (strategy.lambd, strategy.weight_replay_loss) == (lambd, weighted), file
            if steps is not None:
                assert strategy.teacher_steps == steps, file
