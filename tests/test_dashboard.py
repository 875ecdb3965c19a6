"""What users look at in MLflow: the experiment kind, parent-run dashboards, loadable models."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from cl_sweeps.sweep.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, _experiment_id


def test_experiments_are_tagged_as_model_development(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    new = _experiment_id(client, "fresh", (tmp_path / "art").as_uri())
    old = client.create_experiment("older", artifact_location=(tmp_path / "art2").as_uri())
    assert client.get_experiment(old).tags.get(EXPERIMENT_KIND_TAG) is None
    assert _experiment_id(client, "older", None) == old
    for experiment_id in (new, old):
        tags = client.get_experiment(experiment_id).tags
        assert tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"
