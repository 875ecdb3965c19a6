"""CLoG's baselines with one model per task: the ensemble and C-LoRA (`lora`). Each one's defining
property on real tiny UNets: generation picks the task's model; LoRA trains only its adapters and
leaves the base as task 0 left it. (The first `lora` test pays for importing peft, which imports
transformers: seconds on a loaded 2-core machine.)"""

from __future__ import annotations

import io

import pytest
import torch
from test_engine import _comparable
from test_teacher_strategies import ConfigSpy, batch_of, tiny_unet

from cl_sweeps.checkpoint_files import latest_checkpoint
from cl_sweeps.config import ModelConfig, StrategyConfig
from cl_sweeps.diffusion import build_scheduler
from cl_sweeps.evaluation.compute import STUDENT_TRAIN, ForwardCounter, PhaseTimer
from cl_sweeps.sequence import run_sequence
from cl_sweeps.strategies import TrainingContext
from cl_sweeps.strategies.base import strategy_class
from cl_sweeps.strategies.members import TaskMembers, positional_tasks


def setup(name: str, **knobs):
    scheduler = build_scheduler(ModelConfig())
    context = TrainingContext(
        scheduler=scheduler, sampler=None, counter=ForwardCounter(), timer=PhaseTimer(),
        generator=torch.Generator().manual_seed(0), device=torch.device("cpu"),
    )
    return strategy_class(name)(StrategyConfig(name=name, **knobs), context), context


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_steps(strategy, model, task: int, steps: int = 2, begin: bool = True) -> None:
    """What the engine does in a task: begin_task, a fresh Adam (fresh_optimizer), steps."""
    strategy.context.task_index = task
    if begin:
        strategy.begin_task(model, task)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        strategy.loss(model, batch_of(4, seed=task + 1)).loss.backward()
        optimizer.step()


def task_data(task: int):
    data = batch_of(4, seed=task + 1)
    data.labels[:] = torch.tensor([2 * task, 2 * task + 1, 2 * task, 2 * task + 1])
    return data


X = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(3))
T = torch.tensor([900, 700, 500, 300, 100, 10])


def test_members_route_each_sample_to_its_task():
    members = [tiny_unet(seed).eval() for seed in (10, 11, 12)]
    wrapper = TaskMembers(members, [[0, 1], [2, 3], [4, 5]], null_class=6)
    alone = [m(X, T).sample for m in members]
    with torch.no_grad():
        out = wrapper(X, T).sample  # unconditional: equal contiguous shares in task order
        assert positional_tasks(6, 3).tolist() == [0, 0, 1, 1, 2, 2]
        for row, task in enumerate([0, 0, 1, 1, 2, 2]):
            assert torch.allclose(out[row], alone[task][row], atol=1e-5)
        assert positional_tasks(7, 3).tolist() == [0, 0, 0, 1, 1, 2, 2]
        labels = torch.tensor([5, 0, 3, 2, 1, 4])  # by label: the task holding the class
        assert wrapper.tasks_of(6, labels).tolist() == [2, 0, 1, 1, 0, 2]
        guided = torch.tensor([5, 0, 3, 6, 6, 6])  # [y; ∅] (null class 6): twins share a member
        assert wrapper.tasks_of(6, guided).tolist() == [2, 0, 1, 2, 0, 1]
        assert wrapper.tasks_of(6, torch.full((6,), 6)).tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="belong to no task"):
        TaskMembers(members[:2], [[0, 1], [2, 3]], null_class=6).tasks_of(2, torch.tensor([0, 5]))


def test_ensemble_picks_the_task_model():
    strategy, context = setup("ensemble")
    model = tiny_unet(1)
    assert strategy.generation_model(model) is model  # nothing stored yet
    train_steps(strategy, model, 0)
    strategy.end_task(model, 0, task_data(0))
    first = weights(model)
    train_steps(strategy, model, 1)  # re-initialised, then trained on task 1 alone
    for name, value in model.state_dict().items():
        assert not torch.equal(value, first[name]) or value.numel() == 0, name
    strategy.end_task(model, 1, task_data(1))
    second = weights(model)
    assert context.counter.snapshot()[STUDENT_TRAIN] == 2 * 2 * 4  # naive's count, 2 tasks
    generator = strategy.generation_model(model)
    assert isinstance(generator, TaskMembers) and len(generator.members) == 2
    reference = [tiny_unet(0).eval(), tiny_unet(0).eval()]
    reference[0].load_state_dict(first)
    reference[1].load_state_dict(second)
    with torch.no_grad():
        out = generator.eval()(X, T).sample
        assert torch.allclose(out[:3], reference[0](X[:3], T[:3]).sample, atol=1e-5)
        assert torch.allclose(out[3:], reference[1](X[3:], T[3:]).sample, atol=1e-5)
    assert strategy.task_classes == [[0, 1], [2, 3]]
    # the members survive a checkpoint loaded with weights_only=True
    buffer = io.BytesIO()
    torch.save(strategy.state_dict(), buffer)
    buffer.seek(0)
    restored, _ = setup("ensemble")
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        again = restored.generation_model(tiny_unet(0)).eval()(X, T).sample
    assert torch.allclose(again, out, atol=1e-6)


def test_ensemble_reinitialisation_is_seeded_by_the_run():
    runs = []
    for _ in range(2):
        strategy, _ = setup("ensemble")
        model = tiny_unet(1)
        strategy.begin_task(model, 1)
        runs.append(weights(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_lora_trains_only_adapters_and_the_base_stays_frozen():
    strategy, context = setup("lora", lora_rank=4, lora_alpha=8.0)
    spy = ConfigSpy(strategy.config)
    strategy.config = spy
    model = tiny_unet(1)
    keys = set(model.state_dict())
    train_steps(strategy, model, 0)  # task 0: the whole model, as naive
    strategy.end_task(model, 0, task_data(0))
    base = weights(model)
    strategy.begin_task(model, 1)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A.task_1." in n or ".lora_B.task_1." in n for n in trainable)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert len(frozen) == len(keys)  # every base parameter, none trainable
    adapted = {n.split(".lora_")[0] for n in trainable}
    assert adapted and all(n.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v", "conv1", "conv2")
                           or n.endswith("to_out.0") for n in adapted)
    rank_of = {n: p.shape for n, p in trainable.items() if ".lora_A." in n}
    assert all(shape[0] == 4 for shape in rank_of.values())
    train_steps(strategy, model, 1, begin=False)
    strategy.end_task(model, 1, task_data(1))
    assert set(model.state_dict()) == keys  # a plain UNet2DModel again
    for name, value in model.state_dict().items():
        assert torch.equal(value, base[name]), name  # the base did not move
    adapter = strategy.adapters[1]
    assert any(".lora_B." in n and v.abs().sum() > 0 for n, v in adapter.items())  # it trained
    assert spy.read == {"lora_rank", "lora_alpha", "lora_self_reg"}
    generator = strategy.generation_model(model)
    assert isinstance(generator, TaskMembers) and generator.members[0] is model
    merged = generator.members[1]
    assert set(merged.state_dict()) == keys
    with torch.no_grad():
        out = generator.eval()(X, T).sample
        assert torch.allclose(out[:3], model.eval()(X[:3], T[:3]).sample, atol=1e-5)
        assert torch.allclose(out[3:], merged(X[3:], T[3:]).sample, atol=1e-5)
        assert not torch.allclose(out[3:], model(X[3:], T[3:]).sample, atol=1e-4)
    assert context.counter.snapshot()[STUDENT_TRAIN] == 2 * 2 * 4


def test_an_adapters_weight_update_is_peft_s():
    """delta_weight (what the self-regularisation penalises) is the ΔW peft merges, for the
    linear and the convolutional adapted layers alike."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    from cl_sweeps.strategies.lora import add_adapter, delta_weight

    model = tiny_unet(1)
    add_adapter(model, "task_1", 4, 8.0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.normal_()
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    kinds = {type(m.get_base_layer()) for m in layers}
    assert kinds == {torch.nn.Linear, torch.nn.Conv2d}
    for layer in layers:
        mine = delta_weight(layer.lora_A["task_1"].weight, layer.lora_B["task_1"].weight, 2.0)
        assert torch.allclose(mine, layer.get_delta_weight("task_1"), atol=1e-5)
        assert mine.shape == layer.get_base_layer().weight.shape


def test_c_lora_self_regularisation_and_its_gradient_on_a_hand_made_case():
    """‖P ⊙ s·B·A‖² with P the past adapters' ΔW: by hand, P = [[1, 0, 2], [0, 0, 0]],
    B = [[1], [2]], A = [[1, 1, 1]], s = 2 → ΔW = [[2, 2, 2], [4, 4, 4]], P ⊙ ΔW =
    [[2, 0, 4], [0, 0, 0]], penalty 20; G = 2·P²⊙ΔW = [[4, 0, 16], [0, 0, 0]], ∂/∂B = s·G·Aᵀ =
    [[40], [0]], ∂/∂A = s·Bᵀ·G = [[8, 0, 32]]: nothing moves where no past adapter did."""
    from cl_sweeps.strategies.lora import delta_weight, self_regularisation

    past = {"to_q": torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])}
    b = torch.tensor([[1.0], [2.0]], requires_grad=True)
    a = torch.tensor([[1.0, 1.0, 1.0]], requires_grad=True)
    penalty = self_regularisation(past, {"to_q": delta_weight(a, b, 2.0)})
    assert penalty.item() == 20.0
    penalty.backward()
    assert torch.equal(b.grad, torch.tensor([[40.0], [0.0]]))
    assert torch.equal(a.grad, torch.tensor([[8.0, 0.0, 32.0]]))


@pytest.mark.parametrize("strength", [0.0, 0.5])
def test_lora_self_regularisation_in_the_strategy(strength):
    """From task 2 on, the loss adds λ·Σ_layers ‖ΔW_1 ⊙ ΔW_2‖² (computed here with peft's own
    ΔW of the live adapter); λ = 0 is CLoG's loss, without the term."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    from cl_sweeps.strategies.lora import adapter_deltas

    strategy, _ = setup("lora", lora_rank=4, lora_alpha=8.0, lora_self_reg=strength)
    model = tiny_unet(1)
    for task in (0, 1):
        train_steps(strategy, model, task)
        assert "loss_penalty" not in strategy.loss(model, batch_of(4)).parts  # no past adapter
        strategy.end_task(model, task, task_data(task))
    train_steps(strategy, model, 2)
    out = strategy.loss(model, batch_of(4))
    if strength == 0.0:
        assert set(out.parts) == {"loss_real"}
        return
    past = adapter_deltas(strategy.adapters[1], "task_1", 2.0)
    expected = sum(
        (past[name] * layer.get_delta_weight("task_2")).pow(2).sum()
        for name, layer in model.named_modules() if isinstance(layer, BaseTunerLayer)
    )
    assert expected > 0
    assert torch.allclose(out.parts["loss_penalty"], expected, rtol=1e-5)
    assert torch.allclose(out.loss, out.parts["loss_real"] + strength * expected, rtol=1e-5)


@pytest.mark.parametrize("name", ["ensemble", "lora"])
def test_a_resumed_run_ends_as_an_uninterrupted_one(small_trial, tmp_path, name):
    """The real engine: members and adapters live in the strategy's checkpointed state, the
    model between tasks is a plain UNet2DModel, the optimiser is rebuilt at task boundaries."""
    full = run_sequence(small_trial(output_dir=str(tmp_path / "full"), strategy={"name": name}))

    def crash_after_task_1(task_index, metrics, checkpoint_dir):
        if task_index == 1:
            raise KeyboardInterrupt

    partial = small_trial(output_dir=str(tmp_path / "part"), strategy={"name": name})
    with pytest.raises(KeyboardInterrupt):
        run_sequence(partial, crash_after_task_1)
    resumed = run_sequence(partial, resume_from=latest_checkpoint(tmp_path / "part"))
    assert _comparable(resumed.history[-1]) == _comparable(full.history[-1])
    # naive's training forwards; evaluation generated from the members: one model's forwards
    config, last = partial, full.history[-1]
    tasks, iterations = len(config.data.tasks), config.train.iterations_per_task
    assert last["forwards_student_train"] == tasks * iterations * config.train.batch_size
    evaluation = config.evaluation
    assert last["forwards_eval_sampling"] == tasks * evaluation.n_eval_samples * evaluation.eval_steps
    # train_tflops: naive's FLOPs plus, for lora, exactly the adapters' own forward+backward
    # FLOPs once per adapter image-forward (every student forward after task 0), measured here
    adapter_forwards = (tasks - 1) * iterations * config.train.batch_size if name == "lora" else 0
    assert last.get("forwards_adapter_train", 0) == adapter_forwards
    base, adapted = _fwd_bwd_flops(config, adapter=False), _fwd_bwd_flops(config, adapter=True)
    assert adapted > base
    naive_tflops = last["forwards_student_train"] * base / 1e12
    assert last["train_tflops"] - naive_tflops == pytest.approx(
        adapter_forwards * (adapted - base) / 1e12, rel=1e-9, abs=1e-15)


def _fwd_bwd_flops(config, adapter: bool) -> int:
    """FLOPs of one image's forward and backward through the trial's UNet (with a rank-r
    adapter of the trial's lora knobs injected if `adapter`), every parameter trainable."""
    from torch.utils.flop_counter import FlopCounterMode

    from cl_sweeps.diffusion import build_unet
    from cl_sweeps.strategies.lora import add_adapter

    size = config.data.resolved_image_size()
    model = build_unet(config.model, size, 1)
    if adapter:
        add_adapter(model, "measured", config.strategy.lora_rank, config.strategy.lora_alpha)
    model.requires_grad_(True).eval()
    x, t = torch.randn(1, 1, size, size), torch.tensor([500])
    with FlopCounterMode(display=False) as counter:
        model(x, t).sample.sum().backward()
    return counter.get_total_flops()
