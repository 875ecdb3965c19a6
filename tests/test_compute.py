"""Compute accounting adds up: FLOPs = Σ forwards × FLOPs per forward, by purpose."""

from __future__ import annotations

import pytest

from cl_sweeps.bench import format_bench, run_bench
from cl_sweeps.evaluation.compute import flops_by_purpose, measure_flops_per_image
from cl_sweeps.metrics import is_known_metric
from cl_sweeps.sequence import Engine, run_sequence


def test_total_flops_equal_forwards_times_flops_per_forward(small_trial):
    config = small_trial(strategy={"name": "er", "memory_size": 16})
    history = run_sequence(config).history
    per_image = measure_flops_per_image(Engine(config).model)
    assert per_image.forward > 0 and 1.5 < per_image.forward_backward / per_image.forward < 4
    last = history[-1]
    unknown = [name for row in history for name in row if not is_known_metric(name)]
    assert not unknown, f"reported but not declared in cl_sweeps/metrics.py: {unknown}"
    counts = {p: int(last[f"forwards_{p}"]) for p in
              ("student_train", "teacher_generation", "teacher_target", "eval_sampling")}
    # ER: every iteration trains B real + round(r·B) replay images from task 1 on
    batch, iterations = config.train.batch_size, config.train.iterations_per_task
    assert counts["student_train"] == iterations * batch + 2 * iterations * (batch + batch)
    assert counts["eval_sampling"] == 3 * config.evaluation.n_eval_samples * config.evaluation.eval_steps
    spent = flops_by_purpose(counts, per_image)
    train = spent["student_train"] + spent["teacher_generation"] + spent["teacher_target"]
    assert last["train_tflops"] == pytest.approx(train / 1e12, rel=1e-12)
    assert last["eval_tflops"] == pytest.approx(spent["eval_sampling"] / 1e12, rel=1e-12)
    task_sum = sum(row["task_train_tflops"] for row in history)
    assert task_sum == pytest.approx(last["train_tflops"], rel=1e-9)


def test_bench_reports_every_requested_strategy_with_ratios():
    rows = run_bench(["naive", "er"], iterations=1, warmup=0, batch_size=8)
    assert [r.strategy for r in rows] == ["naive", "er"]
    naive, er = rows
    assert naive.forwards_per_iteration["student_train"] == 8
    assert er.forwards_per_iteration["student_train"] == 16
    assert er.gflops_per_iteration == pytest.approx(2 * naive.gflops_per_iteration)
    text = format_bench(rows)
    assert "xnaive meas" in text and "xnaive pred" in text
    # a conditional-only strategy is timed on a class-conditional UNet: guided targets, 2 per pair
    guided = run_bench(["class_guided_distillation"], iterations=1, warmup=0, batch_size=8)[0]
    assert guided.forwards_per_iteration["teacher_target"] == 2 * 8
    assert guided.forwards_per_iteration["student_train"] == 16
    # lora at task 1: B adapter forwards, priced at the adapters' FLOPs on top of naive's
    lora = run_bench(["lora"], iterations=1, warmup=0, batch_size=8)[0]
    assert lora.forwards_per_iteration["adapter_train"] == 8
    assert naive.forwards_per_iteration["adapter_train"] == 0
    assert lora.gflops_per_iteration > naive.gflops_per_iteration
    with pytest.raises(ValueError, match="unknown strategies"):
        run_bench(["bogus"])
