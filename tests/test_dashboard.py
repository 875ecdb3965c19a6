"""What users look at in MLflow: the experiment kind, parent-run dashboards, loadable models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMPipeline
from mlflow.tracking import MlflowClient
from PIL import Image
from torchvision.utils import make_grid

from cl_sweeps.diffusion import DDIMSampler, build_scheduler
from cl_sweeps.evaluation.grids import MIN_GRID_PIXELS, grid_image
from cl_sweeps.sequence import run_sequence
from cl_sweeps.sweep.tracking import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    MODEL_ARTIFACT,
    TrackingTarget,
    TrialTracker,
    _experiment_id,
)


def test_experiments_are_tagged_as_model_development(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    new = _experiment_id(client, "fresh", (tmp_path / "art").as_uri())
    old = client.create_experiment("older", artifact_location=(tmp_path / "art2").as_uri())
    assert client.get_experiment(old).tags.get(EXPERIMENT_KIND_TAG) is None
    assert _experiment_id(client, "older", None) == old
    for experiment_id in (new, old):
        tags = client.get_experiment(experiment_id).tags
        assert tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"


def test_grid_is_enlarged_pixel_for_pixel_and_captioned() -> None:
    samples = torch.rand(16, 1, 8, 8) * 2 - 1
    image = grid_image(samples, "after task 2/5 · naive · FID 12.3")
    grid = make_grid((samples + 1) / 2, nrow=4, padding=1, pad_value=1.0)[0]
    scale = image.width // grid.shape[1]
    assert image.width >= MIN_GRID_PIXELS and image.width == grid.shape[1] * scale
    band = image.height - grid.shape[0] * scale
    pixels = np.asarray(image.convert("L"), dtype=np.int16)
    body = pixels[band:]
    expected = (grid.clamp(0, 1) * 255).round().numpy().astype(np.int16)
    assert np.array_equal(body[::scale, ::scale], expected)  # each block is its source pixel
    assert np.array_equal(body[scale - 1 :: scale, scale - 1 :: scale], expected)
    caption = pixels[:band]
    assert caption.min() < 100 and caption.max() == 255  # dark text on white


def test_sequence_writes_legible_grids(small_trial, tmp_path: Path) -> None:
    config = small_trial(strategy={"name": "generative_distillation"})
    history = run_sequence(config).history
    image = Image.open(Path(config.output_dir) / "samples" / "task_2.png")
    assert image.width >= MIN_GRID_PIXELS
    assert history[-1]["fid"] > 0


def test_logged_model_is_a_ddim_pipeline_that_samples_like_the_run(
    small_trial, tmp_path: Path
) -> None:
    config = small_trial(strategy={"name": "naive"})
    run = run_sequence(config)
    checkpoint = Path(config.output_dir) / "checkpoints" / "task_2"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("models", (tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    tracker = TrialTracker(TrackingTarget(uri, experiment, "-", "models"), tmp_path / "t", "t")
    tracker.spool.ensure(run_id=run_id)  # the trial's run, as if its open_trial had been sent
    tracker.log_model(checkpoint)
    assert tracker.close(timeout_s=120) == 0
    logged = Path(client.download_artifacts(run_id, MODEL_ARTIFACT, str(tmp_path / "dl")))
    assert {"model_index.json", "unet", "scheduler"} <= {p.name for p in logged.iterdir()}

    built = build_scheduler(config.model)  # what the run trained and sampled with
    reference = DDIMSampler(built).sample(
        run.model.eval(), 4, 5, eta=0.0, generator=torch.Generator().manual_seed(0)
    ).images
    for path in (logged, checkpoint):
        pipeline = DDIMPipeline.from_pretrained(path)
        assert _schedule(pipeline.scheduler) == _schedule(built)
        images = pipeline(
            batch_size=4, generator=torch.Generator().manual_seed(0), num_inference_steps=5,
            eta=0.0, output_type="np",
        ).images
        assert images.shape == (4, 8, 8, 1)
        expected = ((reference + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        assert np.allclose(images, expected, atol=1e-5)


def _schedule(scheduler) -> dict:
    return {k: v for k, v in scheduler.config.items() if not k.startswith("_")}
