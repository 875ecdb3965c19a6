"""What a first GPU run would hit, shown on CPU where the mechanism allows: SI across a skipped
fp16 step, the prefix key of the resolved device, the GradScaler state in a prefix, an engine
freed without a collector pass, accelerator_seconds of the held GPUs, `cuda:N` in a sweep, the
MFU table, schedule tables kept on the device, TF32 scoped to the UNet, the deterministic
switch, a fresh Dynamo cache per trial and a CUDA generator state resumed on a CPU node."""

from __future__ import annotations

import gc
import os
import weakref
from pathlib import Path

import pytest
import torch
from conftest import SMALL_TRIAL, merge

from cl_sweeps import metrics as M
from cl_sweeps.bench import known_peak_tflops
from cl_sweeps.config import ConfigError, ModelConfig, StrategyConfig, TrainConfig, TrialConfig
from cl_sweeps.data.sources import ImageSet
from cl_sweeps.diffusion import DDIMSampler, build_scheduler, build_unet
from cl_sweeps.diffusion.sampling import alpha_bar
from cl_sweeps.evaluation.compute import ForwardCounter, PhaseTimer
from cl_sweeps.prefix import prefix_key
from cl_sweeps.prefix_store import PrefixStore
from cl_sweeps.sequence import Engine, run_sequence
from cl_sweeps.strategies import TrainingContext, build_strategy
from cl_sweeps.sweep.schema import parse_sweep_config
from cl_sweeps.throughput import OptimizerStep, Throughput, load_generator_state

CPU = torch.device("cpu")


def trial(tmp: Path, **override) -> TrialConfig:
    return TrialConfig.model_validate(merge(SMALL_TRIAL, {"output_dir": str(tmp), **override}))


def fp16_on_cpu() -> Throughput:
    """fp16's gradient scaler runs on CPU too (fp16 training itself needs CUDA)."""
    return Throughput(CPU, "fp16", channels_last=False, fused_adam=False, tf32=False,
                      compile=False)


# --- 1. SI across a step the GradScaler skips ---------------------------------------------------


def test_si_path_integral_stays_finite_when_the_scaler_skips_a_step():
    torch.manual_seed(0)
    model = build_unet(ModelConfig(), 8, 1)
    scheduler = build_scheduler(ModelConfig())
    context = TrainingContext(
        scheduler=scheduler, sampler=DDIMSampler(scheduler), counter=ForwardCounter(),
        timer=PhaseTimer(), generator=torch.Generator().manual_seed(1), device=CPU,
    )
    si = build_strategy(StrategyConfig(name="si", si_c=1.0), context)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    step = OptimizerStep(fp16_on_cpu(), grad_clip=1.0)
    batch = ImageSet(torch.rand(8, 1, 8, 8) * 2 - 1, torch.zeros(8, dtype=torch.long))
    for iteration in range(4):
        loss = si.loss(model, batch).loss
        if iteration == 1:  # an overflow: the scaler must skip this step
            loss = loss * float("inf")
        before = [p.detach().clone() for p in model.parameters()]
        scale = step.scaler.get_scale()
        step(loss, model, optimizer)
        si.after_optimizer_step(model)
        if iteration == 1:
            assert step.scaler.get_scale() < scale  # the step was skipped, the scale backed off
            assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(torch.isfinite(w).all() for w in si.path.values())
    si.end_task(model, 0, batch)
    assert all(torch.isfinite(v).all() for v in si.importance.values())
    assert any(v.sum() > 0 for v in si.importance.values())  # the other steps still count
    si.context.task_index = 1
    assert torch.isfinite(si.loss(model, batch).loss)  # the next task's loss


# --- 7. prefixes: the resolved device, the GradScaler state, a CUDA generator on CPU -----------


def test_prefix_key_follows_the_resolved_device_and_precision(tmp_path, monkeypatch):
    auto = trial(tmp_path, device="auto", train={"precision": "auto", "iterations_per_task": 4,
                                                 "batch_size": 16})
    explicit = trial(tmp_path, device="cpu", train={"precision": "fp32", "iterations_per_task": 4,
                                                    "batch_size": 16})
    bf16 = trial(tmp_path, device="cpu", train={"precision": "bf16", "iterations_per_task": 4,
                                                "batch_size": 16})
    if not torch.cuda.is_available():  # auto resolves to cpu + fp32 here: the same task 0
        assert prefix_key(auto) == prefix_key(explicit)
    assert prefix_key(bf16) != prefix_key(explicit)
    # The same config on a node whose `auto` resolves to a GPU gets another key.
    from cl_sweeps import prefix

    cpu_key = prefix_key(auto)
    monkeypatch.setattr(prefix, "runs_on", lambda config: {
        "device": "NVIDIA A100-SXM4-80GB", "throughput.precision": "bf16"})
    a100_key = prefix_key(auto)
    monkeypatch.setattr(prefix, "runs_on", lambda config: {
        "device": "Tesla V100-SXM2-16GB", "throughput.precision": "fp32"})
    assert len({cpu_key, a100_key, prefix_key(auto)}) == 3


def test_grad_scaler_state_round_trips_through_a_prefix(tmp_path, monkeypatch):
    """A prefix holds the GradScaler's scale and growth tracker: a run that reuses it continues
    with the scaler the computing run had, not a fresh 65536."""
    config = trial(tmp_path / "a", strategy={"name": "naive"})
    store = PrefixStore(tmp_path / "prefixes")
    computing = Engine(config)
    computing.optimizer_step = OptimizerStep(fp16_on_cpu(), grad_clip=1.0)
    scaler = computing.optimizer_step.scaler
    state = scaler.state_dict()
    state.update(scale=1024.0, _growth_tracker=7)  # where a real fp16 run could be
    scaler.load_state_dict(state)
    computing.shared_task_zero(store, progress=False)
    saved = computing.optimizer_step.scaler.state_dict()
    reusing = Engine(trial(tmp_path / "b", strategy={"name": "er"}))
    reusing.optimizer_step = OptimizerStep(fp16_on_cpu(), grad_clip=1.0)
    reusing.shared_task_zero(store, progress=False)
    assert reusing.optimizer_step.scaler.state_dict() == saved
    assert saved["scale"] != 65536.0


def test_a_cuda_generator_state_resumes_on_a_cpu_generator(caplog):
    """A GPU checkpoint's training generator (16 bytes: seed and offset) on a CPU node: loaded
    as a deterministic reseed with a warning, where set_state would raise."""
    cuda_state = torch.tensor(list(range(16)), dtype=torch.uint8)
    with pytest.raises(RuntimeError):
        torch.Generator().set_state(cuda_state)
    draws = []
    for _ in range(2):
        generator = torch.Generator()
        load_generator_state(generator, cuda_state)
        draws.append(torch.rand(3, generator=generator))
    assert torch.equal(draws[0], draws[1])
    assert "another device type" in caplog.text
    same = torch.Generator().manual_seed(5)
    state = same.get_state()
    restored = torch.Generator()
    load_generator_state(restored, state)
    assert torch.equal(torch.rand(3, generator=restored), torch.rand(3, generator=same))


# --- 6. an engine is freed when its run ends --------------------------------------------------


def test_a_finished_engine_is_freed_without_a_collector_pass(tmp_path):
    config = trial(tmp_path, strategy={"name": "generative_distillation"},
                   data={"tasks": [[0, 1], [2, 3]], "max_train_per_class": 40,
                         "max_test_per_class": 12})
    engine = Engine(config)
    engine.fit_task(0, progress=False)
    engine.end_task(0)
    engine.fit_task(1, progress=False)  # the teacher exists
    assert engine.teacher.module is not None
    refs = [weakref.ref(x) for x in (engine, engine.model, engine.teacher.module,
                                     engine.optimizer)]
    gc.collect()
    gc.disable()
    try:
        del engine
        assert [r() is None for r in refs] == [True] * len(refs)
    finally:
        gc.enable()


# --- 4. accelerator_seconds counts the accelerators held --------------------------------------


def test_accelerator_seconds_count_the_accelerators_a_trial_holds(tmp_path):
    config = trial(tmp_path, data={"tasks": [[0, 1]], "max_train_per_class": 20,
                                   "max_test_per_class": 12})
    row = run_sequence(config, accelerators_held=0.5).history[-1]
    wall = row[M.TRAIN_SECONDS] + row[M.EVAL_SECONDS]
    assert row[M.ACCELERATOR_SECONDS] == pytest.approx(0.5 * wall)
    assert run_sequence(config).history[-1][M.ACCELERATOR_SECONDS] == 0.0  # CPU holds none


def test_the_sweep_hands_resources_per_trial_gpu_to_its_trials():
    import inspect

    from cl_sweeps.sweep import trainable, tuner

    assert "gpus_per_trial=sweep.resources_per_trial.gpu" in inspect.getsource(tuner)
    assert "accelerators_held=context.gpus_per_trial" in inspect.getsource(trainable)


# --- 3. cuda:N in a sweep ------------------------------------------------------------------------


def test_a_sweep_refuses_a_numbered_gpu_with_the_reason():
    sweep = {
        "base": merge(SMALL_TRIAL, {"device": "cuda:1"}),
        "resources_per_trial": {"gpu": 1},
        "search": {"strategy.name": ["naive"]},
    }
    with pytest.raises(ConfigError) as error:
        parse_sweep_config(sweep)
    assert "base.device: 'cuda:1'" in str(error.value)
    assert "numbers them from 0" in str(error.value)
    assert "allowed in a sweep: cuda, auto or cpu" in str(error.value)
    parse_sweep_config({**sweep, "base": merge(SMALL_TRIAL, {"device": "cuda"})})  # accepted


# --- 9. MFU table ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "math", "peak"),
    [
        ("NVIDIA H200 NVL", "bf16", 835.5),
        ("NVIDIA H100 NVL", "bf16", 835.5),
        ("NVIDIA H200", "bf16", 989.4),
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4),
        ("NVIDIA H100 PCIe", "tf32", 378.0),
        ("NVIDIA A100-SXM4-80GB", "tf32", 156.0),
        ("NVIDIA RTX A1000", "bf16", None),
        ("Tesla V100-SXM2-16GB", "tf32", 15.7),  # no TF32 units: fp32 runs on the fp32 ones
        ("Tesla V100-SXM2-16GB", "bf16", None),
        ("Tesla T4", "tf32", 8.1),
        ("Tesla T4", "fp16", 65.0),
    ],
)
def test_mfu_peak_of_real_device_names(name, math, peak):
    assert known_peak_tflops(name, math) == peak


# --- 5. schedule tables stay on the device ------------------------------------------------------


def test_schedule_tables_move_to_the_device_once():
    """The first call moves ᾱ to the timesteps' device and keeps it there, so later calls copy
    nothing (the meta device stands in for a GPU)."""
    scheduler = DDIMSampler(build_scheduler(ModelConfig())).scheduler
    t = torch.tensor([999, 500, -1], device="meta")
    alpha_bar(scheduler, t)
    table, final = scheduler.alphas_cumprod, scheduler.final_alpha_cumprod
    assert table.device.type == "meta" and final.device.type == "meta"
    alpha_bar(scheduler, t)
    assert scheduler.alphas_cumprod is table and scheduler.final_alpha_cumprod is final


# --- 8, 10, 11. TF32 scope, the deterministic switch, a fresh Dynamo cache per trial ------------


@pytest.fixture
def restore_backend_flags():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.deterministic, torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    yield
    (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
     torch.backends.cudnn.deterministic) = saved[:3]
    torch.use_deterministic_algorithms(saved[3], warn_only=saved[4])


def gpu_settings(**changes) -> Throughput:
    """The settings a CUDA trial resolves to; only flags are set, so no GPU is needed."""
    fields = {"device": torch.device("cuda"), "precision": "fp32", "channels_last": False,
              "fused_adam": False, "tf32": True, "compile": False}
    return Throughput(**{**fields, **changes})


def test_tf32_is_on_only_around_unet_work(restore_backend_flags):
    settings = gpu_settings()
    settings.apply_backend_flags()
    tf32 = (torch.backends.cuda.matmul, torch.backends.cudnn)
    assert [b.allow_tf32 for b in tf32] == [False, False]  # FID features, the classifier
    with settings.tf32_scope():
        assert [b.allow_tf32 for b in tf32] == [True, True]  # the training loop
        with settings.tf32_scope():
            pass
        assert [b.allow_tf32 for b in tf32] == [True, True]  # nested scopes restore
    assert [b.allow_tf32 for b in tf32] == [False, False]
    with gpu_settings(tf32=False).tf32_scope():
        assert [b.allow_tf32 for b in tf32] == [False, False]


def test_deterministic_switch_sets_the_backend_flags(restore_backend_flags, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    gpu_settings(deterministic=True).apply_backend_flags()
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    gpu_settings(deterministic=False).apply_backend_flags()
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic
    assert Throughput.resolve(TrainConfig(deterministic=True), CPU).params()[
        "throughput.deterministic"] == "True"


def test_each_compiled_trial_starts_with_a_fresh_dynamo_cache():
    """A reused worker's next trial must not inherit the last one's graphs (after the recompile
    limit Dynamo would silently run the model eagerly): once the next trial's settings are
    applied, the same call is captured afresh instead of hitting the old cache."""
    from torch._dynamo.utils import counters

    settings = Throughput(CPU, "fp32", channels_last=False, fused_adam=False, tf32=False,
                          compile=True, compile_backend="eager")
    settings.apply_backend_flags()
    module = settings.prepare(torch.nn.Linear(4, 2))
    x = torch.randn(3, 4)
    module(x)
    graphs = counters["stats"]["unique_graphs"]
    module(x)
    assert counters["stats"]["unique_graphs"] == graphs  # cached within a trial
    settings.apply_backend_flags()  # the next trial of the worker
    module(x)
    assert counters["stats"]["unique_graphs"] == graphs + 1  # the old cache is gone
