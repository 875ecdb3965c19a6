"""Mixed precision, compilation, the persistent teacher and sync-free loss reads, on CPU."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from safetensors.torch import load_file

from cl_sweeps.bench import Variant, format_bench, format_comparison, known_peak_tflops, run_bench
from cl_sweeps.cli import main
from cl_sweeps.config import ConfigError, ModelConfig, StrategyConfig, TrainConfig
from cl_sweeps.data import build_task_stream, load_source
from cl_sweeps.diffusion import DDIMSampler, build_scheduler, build_unet
from cl_sweeps.evaluation.compute import ForwardCounter, PhaseTimer
from cl_sweeps.sequence import Engine, minibatches, run_sequence
from cl_sweeps.strategies import TrainingContext, build_strategy
from cl_sweeps.throughput import LossReader, OptimizerStep, PersistentTeacher, Throughput

CPU = torch.device("cpu")

# bf16 keeps 8 mantissa bits: per-op relative error ~0.4 %. Over 50 Adam steps from the same
# initialisation, with the same data, timesteps and noise, the mean loss of every 10-iteration
# window stays within this relative distance of fp32's (measured: at most 0.14 %).
BF16_LOSS_TOLERANCE = 0.02


def train_curve(precision: str, small_trial, iterations: int = 50) -> tuple[list[float], Throughput]:
    """Naive diffusion training of the tiny UNet with the engine's own pieces; the mean loss of
    every 10 iterations as read by the LossReader."""
    config = small_trial()
    settings = Throughput.resolve(TrainConfig(precision=precision), CPU)
    torch.manual_seed(0)
    model = build_unet(ModelConfig(), 8, 1)
    scheduler = build_scheduler(ModelConfig())
    context = TrainingContext(
        scheduler=scheduler, sampler=DDIMSampler(scheduler), counter=ForwardCounter(),
        timer=PhaseTimer(), generator=torch.Generator().manual_seed(1), device=CPU,
    )
    strategy = build_strategy(StrategyConfig(name="naive"), context)
    stream = build_task_stream(config.data, load_source(config.data))
    batches = minibatches(stream.train[0], 16, torch.Generator().manual_seed(2))
    optimizer = settings.optimizer(model, lr=1e-3)
    step = OptimizerStep(settings, grad_clip=1.0)
    reader = LossReader(every=10)
    windows = []
    for _ in range(iterations):
        with settings.autocast():
            output = strategy.loss(model, next(batches))
        step(output.loss, model, optimizer)
        read = reader.add(output.loss, output.parts)
        if read is not None:
            windows.append(read["loss"])
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32
    return windows, settings


def test_bf16_autocast_training_follows_the_fp32_loss_curve(small_trial):
    fp32, _ = train_curve("fp32", small_trial)
    bf16, settings = train_curve("bf16", small_trial)
    assert settings.precision == "bf16"
    assert len(fp32) == len(bf16) == 5
    assert fp32[-1] < 0.7 * fp32[0]  # it learns
    assert bf16 != fp32  # autocast really ran in bf16
    for a, b in zip(fp32, bf16):
        assert abs(b - a) / a < BF16_LOSS_TOLERANCE, (fp32, bf16)


def test_short_bf16_run_completes_every_task_with_finite_metrics(small_trial):
    config = small_trial(
        strategy={"name": "generative_distillation"},
        train={"iterations_per_task": 3, "precision": "bf16", "loss_read_every": 2},
    )
    history = run_sequence(config).history
    assert [row["task"] for row in history] == [0, 1, 2]
    for row in history:
        for name in ("denoise_loss", "fid", "kld", "ard", "train_tflops"):
            assert math.isfinite(row[name]), (name, row[name])
    weights = load_file(
        f"{config.output_dir}/checkpoints/task_2/unet/diffusion_pytorch_model.safetensors"
    )
    assert {t.dtype for t in weights.values()} == {torch.float32}


def test_training_loop_reads_the_loss_only_at_its_cadence(small_trial, monkeypatch):
    config = small_trial(
        strategy={"name": "generative_distillation"},
        train={"iterations_per_task": 7, "loss_read_every": 3},
    )
    engine = Engine(config)
    reads = []
    monkeypatch.setattr(engine, "loss_read", lambda task, losses, bar: reads.append(losses))
    items = []
    original = torch.Tensor.item

    def item(tensor: torch.Tensor):
        # Adam reads its step counter, a CPU tensor on every device: not a device sync.
        if "torch/optim" not in sys._getframe(1).f_code.co_filename:
            items.append(tensor)
        return original(tensor)

    monkeypatch.setattr(torch.Tensor, "item", item)
    engine.train_task(0, progress=False)
    engine.train_task(1, progress=False)
    assert not items  # no .item() anywhere else in the loop
    read = [r for r in reads if r is not None]
    assert len(reads) == 2 * 8  # every iteration offers, plus the end of each task
    assert len(read) == 2 * 3  # iterations 3 and 6, and the last one
    assert set(read[-1]) == {"loss", "loss_real", "loss_replay"}
    assert all(math.isfinite(v) for r in read for v in r.values())


def test_loss_reader_means_and_non_finite_values():
    reader = LossReader(every=2)
    assert reader.add(torch.tensor(1.0), {"part": torch.tensor(4.0)}) is None
    assert reader.add(torch.tensor(3.0), {"part": torch.tensor(2.0)}) == {"loss": 2.0, "part": 3.0}
    assert reader.read() is None
    reader.add(torch.tensor(float("nan")), {})
    assert math.isnan(reader.add(torch.tensor(1.0), {})["loss"])  # one NaN in the window shows


def test_persistent_teacher_is_one_module_with_the_students_weights():
    settings = Throughput.resolve(TrainConfig(), CPU)
    student = build_unet(ModelConfig(), 8, 1)
    teacher = PersistentTeacher(lambda: build_unet(ModelConfig(), 8, 1), settings)
    state = torch.get_rng_state()
    first = teacher.copy_of(student)
    assert torch.equal(torch.get_rng_state(), state)  # building it does not move the RNG
    with torch.no_grad():
        next(student.parameters()).add_(1.0)
    second = teacher.copy_of(student)
    assert second is first and not second.training
    assert all(not p.requires_grad for p in second.parameters())
    for a, b in zip(student.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_compiled_sequence_does_not_recompile_per_task(small_trial):
    """The compile path on CPU with the aot_eager backend (Dynamo capture and AOT autograd, the
    graphs inductor would get, without its C++ code generation, which takes minutes on 2 cores)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    config = small_trial(
        strategy={"name": "generative_distillation"},
        train={"iterations_per_task": 2, "compile": True, "compile_backend": "aot_eager"},
        data={"tasks": [[0, 1], [2, 3], [4, 5], [6, 7]]},
        evaluation={"n_eval_samples": 16, "eval_batch_size": 16, "denoise_eval_per_task": 16},
    )
    graphs = []
    run_sequence(config, lambda task, metrics, path: graphs.append(
        counters["stats"]["unique_graphs"]))
    assert graphs[0] > 0  # it compiled
    assert graphs[1] >= graphs[0]  # task 1 brings the teacher's calls
    assert graphs[3] == graphs[2] == graphs[1], graphs  # later tasks reuse every graph


def test_precision_validation():
    with pytest.raises(ConfigError, match="fp16.*needs a CUDA device.*allowed on CPU"):
        from cl_sweeps.config import parse_trial_config

        parse_trial_config({"device": "cpu", "train": {"precision": "fp16"}})
    with pytest.raises(ConfigError, match="'fp16' needs a CUDA device"):
        Throughput.resolve(TrainConfig(precision="fp16"), CPU)  # device auto resolved to CPU
    with pytest.raises(ValueError, match="'auto', 'fp32', 'bf16' or 'fp16'"):
        TrainConfig(precision="fp8")
    assert Throughput.resolve(TrainConfig(), CPU).precision == "fp32"  # auto on CPU
    cpu = Throughput.resolve(TrainConfig(channels_last=True, fused_adam=True, tf32=True), CPU)
    assert cpu.params() == {
        "throughput.precision": "fp32", "throughput.channels_last": "False",
        "throughput.fused_adam": "False", "throughput.tf32": "False",
        "throughput.compile": "False", "throughput.deterministic": "False",
    }


def test_cli_rejects_fp16_on_cpu_without_a_traceback(tmp_path, capsys):
    (tmp_path / "run.yaml").write_text("base: {device: cpu}\n")
    assert main(["run", str(tmp_path / "run.yaml"), "--set", "train.precision=fp16"]) == 2
    err = capsys.readouterr().err
    assert "train.precision 'fp16' needs a CUDA device" in err and "Traceback" not in err
    assert main(["bench", "--strategies", "naive", "--compare", "fp32", "fp16"]) == 2
    assert "'fp16' needs a CUDA device" in capsys.readouterr().err
    assert main(["bench", "--compare", "fp32", "bf16+fast"]) == 2
    assert "PRECISION+compile" in capsys.readouterr().err


def test_bench_compares_variants_with_throughput_columns():
    rows = run_bench(
        ["naive"], iterations=1, warmup=0, batch_size=4,
        variants=[Variant.parse("fp32"), Variant.parse("bf16")], peak_tflops=0.5,
    )
    assert [(r.variant, r.precision) for r in rows] == [("fp32", "fp32"), ("bf16", "bf16")]
    fp32 = rows[0]
    assert fp32.image_forwards_per_second == pytest.approx(4 / fp32.seconds_per_iteration)
    assert fp32.mfu == pytest.approx(fp32.tflops_per_second / 0.5)
    text = format_bench(rows)
    assert "[bf16] precision=bf16" in text and "MFU" in text and "img-fwd/s" in text
    assert "bf16 vs fp32" in format_comparison(rows)
    no_peak = run_bench(["naive"], iterations=1, warmup=0, batch_size=4)
    assert no_peak[0].mfu is None and "MFU " not in format_bench(no_peak).splitlines()[1]


def test_known_gpu_peaks_by_precision():
    assert known_peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.4
    assert known_peak_tflops("NVIDIA H100 PCIe", "tf32") == 378.0
    assert known_peak_tflops("NVIDIA L40S", "bf16") == 362.1
    assert known_peak_tflops("NVIDIA L4", "bf16") == 121.0
    assert known_peak_tflops("Tesla V100-SXM2-32GB", "bf16") is None
    assert known_peak_tflops("Some CPU", "fp32") is None


def test_fp16_gradient_scaler_step_matches_the_unscaled_step():
    """The fp16 path's scale → unscale → clip → step gives the fp32 step exactly (the scale is a
    power of two). On CPU only the scaler mechanics can run; fp16 training itself needs CUDA."""
    fp16 = Throughput(CPU, "fp16", channels_last=False, fused_adam=False, tf32=False,
                      compile=False)
    results = []
    for settings in (Throughput.resolve(TrainConfig(precision="fp32"), CPU), fp16):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1)
        optimizer = settings.optimizer(model, lr=0.1)
        step = OptimizerStep(settings, grad_clip=0.5)
        loss = model(torch.randn(8, 4)).pow(2).mean() * 100  # gradient norm above the clip
        step(loss, model, optimizer)
        results.append([p.detach().clone() for p in model.parameters()])
        assert step.scaler.is_enabled() == (settings.precision == "fp16")
    for a, b in zip(*results):
        assert torch.equal(a, b)
