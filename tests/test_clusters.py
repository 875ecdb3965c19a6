"""The cluster configs in clusters/ parse, and carry the settings a GPU sweep depends on.

Nothing here talks to a cloud: the launcher config is checked with Ray's own offline
validation (defaults merged as `ray up` does, then Ray's JSON schema), the KubeRay manifest by
its structure.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTERS = REPO / "clusters"
AWS_FILE = CLUSTERS / "aws-gpu.yaml"
KUBERAY_FILE = CLUSTERS / "kuberay-gpu.yaml"
README_FILE = CLUSTERS / "README.md"

MAX_SANE_WORKERS = 64  # a typo like 800 should not launch 800 GPU machines


@pytest.fixture(scope="module")
def aws() -> dict:
    return yaml.safe_load(AWS_FILE.read_text())


@pytest.fixture(scope="module")
def kuberay() -> dict:
    return yaml.safe_load(KUBERAY_FILE.read_text())


def _gpu_worker_types(cfg: dict) -> dict[str, dict]:
    head = cfg["head_node_type"]
    return {
        name: node
        for name, node in cfg["available_node_types"].items()
        if name != head and node.get("resources", {}).get("GPU", 0) > 0
    }


def _joined(commands: list[str]) -> str:
    return " ; ".join(commands)


# --------------------------------------------------------------------------- AWS launcher


def test_aws_provider_and_auth(aws):
    assert aws["cluster_name"]
    provider = aws["provider"]
    assert provider["type"] == "aws"
    assert provider["region"]
    zones = provider["availability_zone"].split(",")
    assert zones and all(z.startswith(provider["region"]) for z in zones), zones
    assert isinstance(provider["cache_stopped_nodes"], bool)
    assert aws["auth"]["ssh_user"]
    assert aws["upscaling_speed"] > 0
    assert aws["idle_timeout_minutes"] > 0


def test_aws_head_has_no_gpu(aws):
    head = aws["available_node_types"][aws["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert head["resources"].get("CPU", 1) >= 1
    assert head["node_config"]["InstanceType"]


def test_aws_gpu_worker_type(aws):
    workers = _gpu_worker_types(aws)
    assert workers, "no worker type advertises a GPU"
    for name, node in workers.items():
        assert node["resources"]["GPU"] >= 1, name
        assert node["resources"].get("CPU", 0) >= 1, name
        # GPU instance families: g4dn, g5, g6, g6e, p3, p4d, p5, ...
        assert re.match(r"^[gp]\d", node["node_config"]["InstanceType"]), name
        assert node["min_workers"] == 0, f"{name}: idle GPUs should scale to zero"
        assert 1 <= node["max_workers"] <= aws["max_workers"], name
    assert 1 <= aws["max_workers"] <= MAX_SANE_WORKERS


def test_aws_setup_installs_this_package(aws):
    # The repository is copied to the nodes and pip-installed from there.
    mounts = aws["file_mounts"]
    repo_mounts = [remote for remote, local in mounts.items() if (REPO / local).resolve() == REPO]
    assert repo_mounts, f"no file mount copies the repository root: {mounts}"
    assert re.search(r'(?m)^name = "cl-sweeps"$', (REPO / "pyproject.toml").read_text())

    installs = [shlex.split(c) for c in aws["setup_commands"]]
    assert any(
        cmd[:2] == ["pip", "install"] and any(arg in repo_mounts for arg in cmd[2:])
        for cmd in installs
    ), f"setup_commands do not pip-install {repo_mounts}: {aws['setup_commands']}"


def test_aws_ray_start_commands(aws):
    head = _joined(aws["head_start_ray_commands"])
    worker = _joined(aws["worker_start_ray_commands"])
    assert "ray start --head" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "--dashboard-host=0.0.0.0" in head
    assert "ray start --address=$RAY_HEAD_IP:6379" in worker


def test_aws_token_auth_on_every_node(aws):
    # A worker's `ray start` does not enable token auth by itself: the mode must be set on
    # every node, and the token file must reach every node.
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert "RAY_AUTH_MODE=token" in _joined(aws[key]), key
    assert "~/.ray/auth_token" in aws["file_mounts"]


def test_aws_env_comes_from_a_local_file_not_the_config(aws):
    # MLflow / Optuna settings come from a file outside the repository, exported before
    # `ray start` so that every trial inherits them.
    env_mounts = [r for r, local in aws["file_mounts"].items() if r.endswith(".env")]
    assert len(env_mounts) == 1, aws["file_mounts"]
    local = aws["file_mounts"][env_mounts[0]]
    assert local.startswith("~/"), f"{local}: keep the env file out of the repository"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = _joined(aws[key])
        assert f". {env_mounts[0]}" in start, key
        assert start.index(env_mounts[0]) < start.index("ray start"), key
    assert "MLFLOW_TRACKING_URI" in _joined(aws["head_start_ray_commands"])


def _ray_validate():
    """Ray's own launcher validation, or else the JSON schema Ray ships (both offline)."""
    try:
        from ray.autoscaler._private.util import prepare_config, validate_config
    except ImportError:  # a private module: fall back to the schema if it moves
        pass
    else:
        # What `ray up` does before it contacts AWS: merge the provider defaults, then
        # validate against ray-schema.json (plus Ray's own checks).
        return lambda cfg: validate_config(prepare_config(copy.deepcopy(cfg)))

    import ray.autoscaler

    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    if not schema_path.exists():
        pytest.skip(f"Ray ships no launcher schema at {schema_path}")
    schema = json.loads(schema_path.read_text())
    return lambda cfg: jsonschema.validate(cfg, schema)


def test_aws_config_passes_ray_validation(aws):
    validate = _ray_validate()
    validate(aws)

    # The validator is live: a misspelt key or a node type without resources is refused.
    bad = copy.deepcopy(aws)
    bad["max_worker"] = bad.pop("max_workers")
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    bad = copy.deepcopy(aws)
    del next(iter(_gpu_worker_types(bad).values()))["resources"]
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)


# --------------------------------------------------------------------------- KubeRay


def _containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def _all_ray_containers(kr: dict) -> list[dict]:
    spec = kr["spec"]
    out = list(_containers(spec["headGroupSpec"]["template"]))
    for group in spec["workerGroupSpecs"]:
        out += _containers(group["template"])
    return out


def test_kuberay_kind_and_autoscaling(kuberay):
    assert kuberay["apiVersion"] == "ray.io/v1"
    assert kuberay["kind"] == "RayCluster"
    assert kuberay["metadata"]["name"]
    spec = kuberay["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"]["mode"] == "token"
    for container in _all_ray_containers(kuberay):
        assert container["image"].split(":")[1].startswith(spec["rayVersion"] + "-"), (
            f"{container['name']}: image {container['image']} is not Ray {spec['rayVersion']}"
        )


def test_both_clusters_run_the_same_ray(aws, kuberay):
    # Jobs are submitted with one local `ray`; both clusters must match it, so each other.
    tag = aws["docker"]["image"].split(":")[1]
    assert tag.startswith(kuberay["spec"]["rayVersion"] + "-"), aws["docker"]["image"]


def test_kuberay_head_exposes_ports(kuberay):
    head = kuberay["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    (container,) = _containers(head["template"])
    ports = {p["containerPort"] for p in container["ports"]}
    assert {6379, 8265, 10001} <= ports
    assert "nvidia.com/gpu" not in container.get("resources", {}).get("limits", {})


def test_kuberay_gpu_worker_group(kuberay):
    groups = kuberay["spec"]["workerGroupSpecs"]
    gpu_groups = [
        g
        for g in groups
        if any(
            int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0)) >= 1
            for c in _containers(g["template"])
        )
    ]
    assert gpu_groups, "no worker group has an nvidia.com/gpu limit"
    for group in gpu_groups:
        assert group["groupName"]
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert 1 <= group["maxReplicas"] <= MAX_SANE_WORKERS
        pod = group["template"]["spec"]
        assert pod["nodeSelector"], "GPU pods should target GPU nodes"
        assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])


def test_kuberay_containers_start_ray(kuberay):
    # With overwrite-container-cmd, KubeRay runs the containers' own args, which must still
    # run the generated `ray start` (otherwise no Ray node ever starts).
    if kuberay["metadata"].get("annotations", {}).get("ray.io/overwrite-container-cmd") == "true":
        for container in _all_ray_containers(kuberay):
            assert "$KUBERAY_GEN_RAY_START_CMD" in " ".join(container["args"]), container["name"]


def test_kuberay_tracking_env_from_secret(kuberay):
    for container in _all_ray_containers(kuberay):
        env = {e["name"]: e for e in container["env"]}
        uri = env["MLFLOW_TRACKING_URI"]
        assert "value" not in uri, f"{container['name']}: MLFLOW_TRACKING_URI inline"
        assert uri["valueFrom"]["secretKeyRef"]["name"]
        for name, var in env.items():
            if re.search(r"PASSWORD|TOKEN|SECRET|KEY", name):
                assert "value" not in var, f"{container['name']}: {name} inline"


# --------------------------------------------------------------------------- no secrets

SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key": re.compile(r"(?i)aws_secret_access_key[ \t]*[=:][ \t]*['\"]?[A-Za-z0-9/+]"),
    "password assignment": re.compile(r"(?i)password[ \t]*[=:][ \t]*['\"]?[^\s'\"$<{]"),
    "credentials in a URL": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"),
    "token value": re.compile(
        r"(?i)\b(RAY_AUTH_TOKEN|MLFLOW_TRACKING_TOKEN)[ \t]*[=:][ \t]*['\"]?[A-Za-z0-9]"
    ),
}


@pytest.mark.parametrize("path", [AWS_FILE, KUBERAY_FILE, README_FILE], ids=lambda p: p.name)
def test_no_literal_secrets(path):
    text = path.read_text()
    for what, pattern in SECRET_PATTERNS.items():
        match = pattern.search(text)
        assert match is None, f"{path.name}: looks like a literal {what}: {match.group(0)!r}"


def test_secret_scan_catches_secrets():
    # The patterns above are not vacuous.
    samples = [
        "AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key = wJalrXUtnFEMI",
        "PGPASSWORD=hunter2",
        "postgresql://optuna:hunter2@db:5432/optuna",
        "RAY_AUTH_TOKEN=abc123",
    ]
    for sample in samples:
        assert any(p.search(sample) for p in SECRET_PATTERNS.values()), sample
