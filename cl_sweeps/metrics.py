"""Metric names: an API. Dashboards, Optuna objectives and frontiers are built on them.

Every metric the engine reports is declared here once, with its meaning and when it is logged;
the README's metric table is checked against this list by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

# The names, as constants for the code that computes them (never string literals there).
TASK = "task"
DENOISE_LOSS = "denoise_loss"
FID = "fid"
FID_FINAL = "fid_final"
FID_AVG = "fid_avg"
FORGETTING = "forgetting"
AIQ = "aiq"
AFQ = "afq"
FORGETTING_RATE = "fr"
KLD = "kld"
FID_VAL = "fid_val"
KLD_VAL = "kld_val"
FID_FINAL_VAL = "fid_final_val"
ARD = "ard"
CLASSIFIER_ACCURACY = "classifier_accuracy"
LABEL_AGREEMENT = "label_agreement"
ACCURACY = "accuracy"
ACCURACY_FINAL = "accuracy_final"
ACCURACY_FORGETTING = "accuracy_forgetting"
ACCURACY_VAL = "accuracy_val"
ACCURACY_FINAL_VAL = "accuracy_final_val"
CLASSIFIER_TRAIN_TFLOPS = "classifier_train_tflops"
TRAIN_TFLOPS = "train_tflops"
TASK_TRAIN_TFLOPS = "task_train_tflops"
REUSED_TRAIN_TFLOPS = "reused_train_tflops"
EVAL_TFLOPS = "eval_tflops"
TRAIN_SECONDS = "train_seconds"
REPLAY_GENERATION_SECONDS = "replay_generation_seconds"
EVAL_SECONDS = "eval_seconds"
ACCELERATOR_SECONDS = "accelerator_seconds"
PEAK_MEMORY_MB = "peak_memory_mb"
DENOISE_LOSS_TASK = "denoise_loss_task_"  # + task index
FID_TASK = "fid_task_"  # + task index
ACCURACY_TASK = "accuracy_task_"  # + task index (classifier_replay)
FORWARDS = "forwards_"  # + the purpose of the image-forwards (evaluation/compute.py)

TASK_PREFIXES = (DENOISE_LOSS_TASK, FID_TASK, ACCURACY_TASK)  # followed by the 0-based task index k
# What a trial costs (a frontier's compute axis), as opposed to what it achieves.
COST_METRICS = (
    TRAIN_TFLOPS, TASK_TRAIN_TFLOPS, REUSED_TRAIN_TFLOPS, CLASSIFIER_TRAIN_TFLOPS, EVAL_TFLOPS,
    TRAIN_SECONDS,
    REPLAY_GENERATION_SECONDS, EVAL_SECONDS, ACCELERATOR_SECONDS, PEAK_MEMORY_MB,
)


# A quality metric -> the same measured on the validation split (data.validation_per_class).
VALIDATION_FORMS = {
    FID: FID_VAL, KLD: KLD_VAL, FID_FINAL: FID_FINAL_VAL,
    ACCURACY: ACCURACY_VAL, ACCURACY_FINAL: ACCURACY_FINAL_VAL,
}


def validation_form(name: str) -> str | None:
    """The validation counterpart of a test metric (fid_final -> fid_final_val), else None."""
    return VALIDATION_FORMS.get(name)


def per_task_form(name: str) -> str:
    """What an after-the-last-task objective is after every task (fid_final -> fid,
    fid_final_val -> fid_val; ASHA compares trials on it); a per-task metric stays itself."""
    stem = name.replace("_final", "", 1)
    return stem if stem != name and is_per_task_metric(stem) else name


def is_cost_metric(name: str) -> bool:
    """True for what a trial spends (COST_METRICS, forwards_<purpose>), not what it achieves."""
    return name in COST_METRICS or name.startswith(FORWARDS)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    meaning: str
    when: str


AFTER_EACH_TASK = "after each task (step = task index)"
AFTER_LAST_TASK = "after the last task"

METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(TASK, "0-based index of the task just learned", AFTER_EACH_TASK),
    MetricSpec(
        DENOISE_LOSS,
        "mean noise-prediction MSE on the test images of all seen tasks (fixed noise and "
        "timesteps per image, so values are comparable across tasks and trials)",
        AFTER_EACH_TASK,
    ),
    MetricSpec("denoise_loss_task_<k>", "the same on task k's test images only", AFTER_EACH_TASK),
    MetricSpec(
        FID,
        "stream FID: n_eval_samples generated images vs the test images of all seen tasks, in "
        "the feature space of evaluation.fid_features (classifier penultimate or Inception-2048)",
        AFTER_EACH_TASK,
    ),
    MetricSpec(
        "fid_task_<k>",
        "FID restricted to seen task k: generated images the classifier assigns to task k's "
        "classes (model.conditional: the images generated for task k's classes) vs task k's "
        "test images; inf when fewer than 2 generated images fall in task k (the task is "
        "forgotten)",
        AFTER_EACH_TASK,
    ),
    MetricSpec(FID_FINAL, "the stream FID after the last task", AFTER_LAST_TASK),
    MetricSpec(FID_AVG, "mean of fid_task_<k> over all tasks after the last task", AFTER_LAST_TASK),
    MetricSpec(
        FORGETTING,
        "mean over tasks k < T-1 of fid_task_<k> after the last task minus fid_task_<k> right "
        "after task k was learned (NaN for a single task)",
        AFTER_LAST_TASK,
    ),
    MetricSpec(
        AIQ,
        "CLoG's average incremental quality: mean over tasks t of the mean fid_task_<k> (k <= t) "
        "after task t; unlike fid_avg it counts the quality along the way, not only at the end",
        AFTER_LAST_TASK,
    ),
    MetricSpec(
        AFQ,
        "CLoG's average final quality: mean of fid_task_<k> after the last task (the same number "
        "as fid_avg, under CLoG's name)",
        AFTER_LAST_TASK,
    ),
    MetricSpec(
        FORGETTING_RATE,
        "CLoG's forgetting rate: mean over tasks k < T-1 of fid_task_<k> after the last task "
        "minus its lowest fid_task_<k> before the last task (forgetting uses the value right "
        "after task k instead, so fr >= forgetting)",
        AFTER_LAST_TASK,
    ),
    MetricSpec(
        KLD,
        "KL(true class histogram of the seen test data ‖ histogram of the classes the evaluation "
        "classifier predicts for the generated images), +1e-8 smoothing",
        AFTER_EACH_TASK,
    ),
    MetricSpec(
        FID_VAL,
        "stream FID of the same generated images vs the validation images of all seen tasks "
        "(data.validation_per_class; absent without a split)",
        AFTER_EACH_TASK,
    ),
    MetricSpec(FID_FINAL_VAL, "fid_val after the last task", AFTER_LAST_TASK),
    MetricSpec(
        KLD_VAL,
        "kld against the class histogram of the seen validation images (absent without a split)",
        AFTER_EACH_TASK,
    ),
    MetricSpec(ARD, "absolute ratio difference ½ Σ_c abs(ρ_true(c) − ρ_gen(c))", AFTER_EACH_TASK),
    MetricSpec(
        CLASSIFIER_ACCURACY,
        "test accuracy of the evaluation classifier (trained once on the full training set)",
        AFTER_EACH_TASK,
    ),
    MetricSpec(
        LABEL_AGREEMENT,
        "model.conditional: the fraction of generated images the evaluation classifier assigns "
        "to the class they were generated for (chance: 1 / seen classes)",
        AFTER_EACH_TASK,
    ),
    MetricSpec(
        ACCURACY,
        "classifier_replay: top-1 accuracy of the continually trained classifier on the test "
        "images of all seen tasks (sample-weighted)",
        AFTER_EACH_TASK,
    ),
    MetricSpec(
        "accuracy_task_<k>", "classifier_replay: the same on task k's test images only",
        AFTER_EACH_TASK,
    ),
    MetricSpec(
        ACCURACY_FINAL,
        "classifier_replay: accuracy after the last task (on the whole test set)",
        AFTER_LAST_TASK,
    ),
    MetricSpec(
        ACCURACY_VAL,
        "classifier_replay: the same classifier's accuracy on the validation images of all seen "
        "tasks (data.validation_per_class; absent without a split)",
        AFTER_EACH_TASK,
    ),
    MetricSpec(ACCURACY_FINAL_VAL, "classifier_replay: accuracy_val after the last task",
               AFTER_LAST_TASK),
    MetricSpec(
        ACCURACY_FORGETTING,
        "classifier_replay: mean over tasks k < T-1 of the best accuracy_task_<k> ever reported "
        "minus accuracy_task_<k> after the last task (NaN for a single task)",
        AFTER_LAST_TASK,
    ),
    MetricSpec(
        TRAIN_TFLOPS,
        "cumulative training compute in TFLOPs: student forward+backward, teacher generation "
        "and teacher targets (image-forwards × measured FLOPs per image-forward), LoRA "
        "adapters' and EMA teacher updates' FLOPs, plus classifier_train_tflops and the "
        "generator forwards of classifier replay",
        AFTER_EACH_TASK,
    ),
    MetricSpec(
        CLASSIFIER_TRAIN_TFLOPS,
        "classifier_replay: cumulative TFLOPs of the classifier's own training (its "
        "forward+backward per image, the frozen labeller's forwards on replay images); part "
        "of train_tflops",
        AFTER_EACH_TASK,
    ),
    MetricSpec(TASK_TRAIN_TFLOPS, "training TFLOPs of this task alone", AFTER_EACH_TASK),
    MetricSpec(
        REUSED_TRAIN_TFLOPS,
        "the part of train_tflops this trial took from a shared task-0 prefix instead of "
        "computing it (0 if it computed its own; see share_prefix)",
        AFTER_EACH_TASK,
    ),
    MetricSpec(EVAL_TFLOPS, "cumulative evaluation-sampling TFLOPs", AFTER_EACH_TASK),
    MetricSpec(
        "forwards_student_train",
        "cumulative UNet image-forwards of the student in training (each with a backward)",
        AFTER_EACH_TASK,
    ),
    MetricSpec(
        "forwards_teacher_generation",
        "cumulative teacher image-forwards spent generating replay",
        AFTER_EACH_TASK,
    ),
    MetricSpec(
        "forwards_teacher_target",
        "cumulative teacher image-forwards spent computing distillation targets",
        AFTER_EACH_TASK,
    ),
    MetricSpec(
        "forwards_classifier_replay_generation",
        "cumulative generator (previous diffusion model) image-forwards spent generating the "
        "classifier's replay: batch_size × generation_steps per classifier iteration",
        AFTER_EACH_TASK,
    ),
    MetricSpec(
        "forwards_adapter_train",
        "cumulative student image-forwards (each with a backward) that also pass through the "
        "adapters a strategy trains (lora, tasks after the first), priced in train_tflops at the "
        "adapters' own FLOPs",
        AFTER_EACH_TASK,
    ),
    MetricSpec(
        "forwards_ema_update",
        "cumulative EMA teacher updates (teacher: ema, one per optimiser step from task 1 on; "
        "not image-forwards), priced in train_tflops at 3 FLOPs per model parameter each",
        AFTER_EACH_TASK,
    ),
    MetricSpec(
        "forwards_eval_sampling",
        "cumulative image-forwards spent sampling for evaluation",
        AFTER_EACH_TASK,
    ),
    MetricSpec(
        TRAIN_SECONDS, "cumulative wall-clock seconds of training (replay generation included)",
        AFTER_EACH_TASK,
    ),
    MetricSpec(
        REPLAY_GENERATION_SECONDS,
        "the part of train_seconds spent generating replay with the teacher",
        AFTER_EACH_TASK,
    ),
    MetricSpec(EVAL_SECONDS, "cumulative wall-clock seconds of evaluation", AFTER_EACH_TASK),
    MetricSpec(
        ACCELERATOR_SECONDS,
        "(train_seconds + eval_seconds) × accelerators held by the trial (0 on CPU)",
        AFTER_EACH_TASK,
    ),
    MetricSpec(
        PEAK_MEMORY_MB,
        "peak accelerator memory allocated (CUDA), or the process's peak resident memory (CPU)",
        AFTER_EACH_TASK,
    ),
)

METRIC_NAMES: tuple[str, ...] = tuple(spec.name for spec in METRICS)

# What a sweep file without `objectives:` optimises (both minimised), and what `cl-sweeps
# frontier` and `report` draw: image quality after the last task, and the training compute it
# cost. A sweep ranks on the first; the frontier puts compute on its x axis (FRONTIER_AXES).
DEFAULT_OBJECTIVES: tuple[str, ...] = (FID_FINAL, TRAIN_TFLOPS)
FRONTIER_AXES: tuple[str, ...] = DEFAULT_OBJECTIVES[::-1]  # (x, y): compute, then quality


def task_metric(prefix: str, task: int) -> str:
    """The name of a per-task metric, e.g. task_metric('fid_task_', 2) == 'fid_task_2'."""
    if prefix not in TASK_PREFIXES:
        raise ValueError(f"unknown per-task metric prefix {prefix!r}; allowed: {TASK_PREFIXES}")
    return f"{prefix}{task}"


def is_known_metric(name: str) -> bool:
    """True for a declared metric or a per-task metric with a declared prefix."""
    if name in METRIC_NAMES:
        return True
    return task_of_metric(name) is not None


def task_of_metric(name: str) -> int | None:
    """k of a per-task metric such as fid_task_k (ASCII digits only), else None."""
    for prefix in TASK_PREFIXES:
        digits = name[len(prefix):]
        if name.startswith(prefix) and digits.isascii() and digits.isdigit() and len(digits) < 6:
            return int(digits)
    return None


def is_per_task_metric(name: str) -> bool:
    """True for a metric reported after every task (what ASHA can compare trials on)."""
    if task_of_metric(name) is not None:
        return True
    return any(spec.name == name and spec.when == AFTER_EACH_TASK for spec in METRICS)
