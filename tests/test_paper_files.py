"""The shipped paper files run what the paper's public code launches.

The tables below are written from the reference's launch scripts (Atenrev/
diffusion_continual_learning: scripts/launch_cl_fmnist_experiments.sh,
scripts/launch_cl_cifar10_experiments.sh, scripts/condor/launch_generative_replay_targets.sh,
scripts/condor/launch_cl_cifar10_targets.sh) and the strategy JSON files they name
(configs/strategy/*.json: batch, epochs, teacher steps, teacher eta, weight_replay_loss).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cl_sweeps.config import TrainConfig
from cl_sweeps.strategies.catalog import strategy_knobs
from cl_sweeps.sweep.schema import load_sweep_config
from cl_sweeps.sweep.search_params import grid
from cl_sweeps.sweep.space import trial_config_for

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
SEEDS = [42, 69, 1714]  # train_cl.py --seed -1

# (strategy, teacher steps or None, λ or None): one launch line each
GD_FMNIST_LAMBDAS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0)
REFERENCE_FMNIST = {
    ("naive", None, None),
    ("cumulative", None, None),
    *{("generative_replay", k, 1.0) for k in (2, 10, 100)},  # --lambd default 1.0
    *{("generative_distillation", 2, lam) for lam in GD_FMNIST_LAMBDAS},
    ("generative_distillation", 10, 0.75),
    ("generative_distillation", 100, 0.75),
    *{("lwf_distillation", None, lam)
      for lam in (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75)},
    *{("gaussian_distillation", None, lam) for lam in (1, 4, 8, 12, 16, 20, 24, 28)},
}
REFERENCE_CIFAR10 = {
    ("naive", None, None),
    ("cumulative", None, None),
    *{("generative_replay", k, 1.0) for k in (2, 10, 100)},
    *{("generative_distillation", k, 0.75) for k in (2, 10, 100)},
    ("lwf_distillation", None, 1.25),
    ("gaussian_distillation", None, 8.0),
}
# setting -> (Fashion-MNIST, CIFAR-10), from the strategy JSONs and train_cl.py
REFERENCE_SETTINGS = {
    "data.dataset": ("fashion_mnist", "cifar10"),
    "data.num_tasks": (5, 5),
    "model.preset": ("paper", "paper_cifar"),  # ddim_medium.json, ddim_medium_3ch.json
    "train.batch_size": (128, 64),
    "train.epochs_per_task": (100, 200),
    "train.last_partial_batch": (True, True),  # torch DataLoader, drop_last=False
    "train.lr": (2e-4, 2e-4),
    "train.grad_clip": (1.0, 1.0),
    "train.reset_optimizer": (True, True),
    "train.precision": ("fp32", "fp32"),
    "train.tf32": (False, False),
    "strategy.replay_ratio": (1.0, 1.0),  # replay_size null: a replay batch of B
    "strategy.teacher_eta": (0.0, 0.0),
    "strategy.weight_replay_loss": (True, True),
    "strategy.replay_timesteps": ((0, 1000), (0, 1000)),  # replay_start_timestep 0
    "evaluation.n_eval_samples": (10000, 10000),
    "evaluation.eval_steps": (10, 20),  # --generation_steps
    "evaluation.fid_features": ("inception", "inception"),
    "evaluation.classifier_arch": ("resnet18", "resnet18"),
}


def _dotted(config, key: str):
    for part in key.split("."):
        config = getattr(config, part)
    return config


def _trials(file: str) -> list:
    """Every configuration of the file's grid as the TrialConfig a trial would run."""
    sweep = load_sweep_config(SPACES / file)
    base = sweep.base.model_dump(mode="json")
    configs = []
    for point in grid(sweep):
        fields = {sweep.field_of(key): value for key, value in point.items()}
        configs.append(trial_config_for(base, fields, list(sweep.seed_keys), Path(".")))
    return sweep, configs


def _row(config) -> tuple:
    """(strategy, teacher steps, λ), each None where the strategy does not read it."""
    strategy = config.strategy
    knobs = strategy_knobs(strategy.name)
    return (
        strategy.name,
        strategy.teacher_steps if "teacher_steps" in knobs else None,
        float(strategy.lambd) if "lambd" in knobs else None,
    )


@pytest.mark.parametrize("file,reference,column", [
    ("paper_fmnist.yaml", REFERENCE_FMNIST, 0),
    ("paper_cifar10.yaml", REFERENCE_CIFAR10, 1),
])
def test_paper_file_runs_the_reference_configurations(file, reference, column) -> None:
    sweep, configs = _trials(file)
    rows = [_row(c) for c in configs]
    assert len(rows) == len(set(rows)), "a configuration is run twice"
    assert set(rows) == reference
    assert sweep.seeds == SEEDS
    assert list(sweep.seed_keys) == ["seed", "data.class_order_seed"]  # the seed orders classes
    assert sweep.search_algorithm.name == "grid"
    for config in configs:
        for key, values in REFERENCE_SETTINGS.items():
            expected = values[column]
            actual = _dotted(config, key)
            assert (tuple(actual) if isinstance(actual, (list, tuple)) else actual) == expected, \
                f"{file}: {key}"


# the classifier of the second experiment: cnn_w_diffusion.json / cnn_w_naive.json /
# cnn_w_cumulative.json (20 epochs, batch 128) and cnn.json (Adam 1e-3); its replay is generated
# with --generation_steps (the evaluation's DDIM steps)
CLASSIFIER_MODES = {"naive": "naive", "cumulative": "cumulative"}  # else generative


@pytest.mark.parametrize("file", ["paper_fmnist.yaml", "paper_cifar10.yaml"])
def test_classifier_replay_is_the_references(file) -> None:
    _, configs = _trials(file)
    for config in configs:
        replay = config.classifier_replay
        assert replay is not None, config.strategy.name
        assert replay.mode == CLASSIFIER_MODES.get(config.strategy.name, "generative")
        assert (replay.epochs_per_task, replay.batch_size, replay.lr) == (20, 128, 1e-3)
        assert replay.temperature == 2.0 and replay.distillation == "reference"
        assert replay.generation_steps in (None, config.evaluation.eval_steps)


def test_cifar10_trains_on_flipped_images() -> None:
    _, configs = _trials("paper_cifar10.yaml")
    assert all(c.data.augment is not False and c.data.info.augment for c in configs)


@pytest.mark.parametrize("images,batch,epochs,expected", [
    (60_000, 128, 100, 9_400),   # Fashion-MNIST: 12,000 per task, ceil(93.75) = 94 per epoch
    (50_000, 64, 200, 31_400),   # CIFAR-10: 10,000 per task, ceil(156.25) = 157 per epoch
])
def test_iterations_per_task_are_the_reference_loaders(images, batch, epochs, expected) -> None:
    per_task = images // 5
    kept = TrainConfig(epochs_per_task=epochs, batch_size=batch, last_partial_batch=True)
    assert kept.iterations(per_task) == expected
    dropped = TrainConfig(epochs_per_task=epochs, batch_size=batch)
    assert dropped.iterations(per_task) == epochs * per_task // batch  # 9,375 and 31,250
    # cumulative trains its epochs over every task so far: 24,000 images -> 188 per epoch
    assert kept.iterations(2 * per_task) == epochs * -(-2 * per_task // batch)
    # and the training loop uses this count
    from cl_sweeps.config import TrialConfig
    from cl_sweeps.sequence import iterations_for

    trial = TrialConfig.model_validate({"train": kept.model_dump()})
    assert iterations_for(trial, per_task) == expected


def test_cifar10_distillation_says_it_is_a_search_space() -> None:
    header = (SPACES / "cifar10_distillation.yaml").read_text().split("\nname:")[0]
    assert "search space" in header and "paper_cifar10.yaml" in header
