"""The evaluation classifier: accuracy on sklearn digits, disk cache, one training under a race."""

import hashlib
import json
import multiprocessing as mp
from pathlib import Path

import pytest
import torch
from torch import Tensor

from cl_sweeps.evaluation import classifier as clf
from cl_sweeps.evaluation.classifier import (
    build_classifier,
    load_or_train_classifier,
    train_classifier,
)

TRAIN_ARGS = {
    "arch": "small_cnn",
    "num_classes": 10,
    "seed": 0,
    "epochs": 5,
    "batch_size": 64,
    "device": "cpu",
}
# the cache tests only need *a* classifier: one epoch on a subset keeps them fast
QUICK_ARGS = {**TRAIN_ARGS, "epochs": 1}


@pytest.fixture(scope="module")
def digits() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """sklearn's bundled 8x8 digits in [-1, 1], stratified 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 8 - 1
    y = torch.tensor(data.target, dtype=torch.long)
    train, test = train_test_split(
        torch.arange(len(y)), test_size=0.25, stratify=data.target, random_state=0
    )
    return x[train], y[train], x[test], y[test]


@pytest.fixture(scope="module")
def small_digits(digits) -> tuple[Tensor, ...]:
    return tuple(part[:300] for part in digits)


def _weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_small_cnn_learns_digits(digits) -> None:
    model, acc = train_classifier(*digits, **TRAIN_ARGS)
    assert acc > 0.9
    assert not model.training
    feats = model.features(digits[2][:7])
    assert feats.shape == (7, model.feature_dim)


def test_training_is_deterministic_and_leaves_global_rng_alone(small_digits) -> None:
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    first, acc1 = train_classifier(*small_digits, **QUICK_ARGS)
    assert torch.equal(torch.rand(3), before)  # the trial's own random stream is untouched
    second, acc2 = train_classifier(*small_digits, **QUICK_ARGS)
    assert acc1 == acc2 and _weights_digest(first) == _weights_digest(second)


@pytest.mark.parametrize("in_channels,size", [(1, 8), (3, 16), (1, 32)])
def test_resnet18_is_torchvisions_with_the_imagenet_stem(in_channels: int, size: int) -> None:
    model = build_classifier("resnet18", in_channels, num_classes=10).eval()
    x = torch.rand(2, in_channels, size, size) * 2 - 1
    with torch.no_grad():
        assert model.features(x).shape == (2, 512)
        assert model(x).shape == (2, 10)
        # grayscale is repeated to the 3 input channels, as the paper's classifier
        if in_channels == 1:
            torch.testing.assert_close(model(x), model(x.repeat(1, 3, 1, 1)))
    net = model.net
    assert net.conv1.in_channels == 3 and net.conv1.kernel_size == (7, 7)
    assert net.conv1.stride == (2, 2) and isinstance(net.maxpool, torch.nn.MaxPool2d)


def test_resnet18_recipe_is_the_reference_one() -> None:
    recipe = clf.RECIPES["resnet18"]
    assert (recipe.optimizer, recipe.lr, recipe.batch_size, recipe.epochs) == ("adam", 5e-4, 64, 100)
    assert recipe.augment and recipe.val_fraction > 0
    assert clf.recipe_for("resnet18", epochs=3).epochs == 3


def test_augmentation_fills_black_and_adds_small_noise() -> None:
    black = -torch.ones(64, 1, 16, 16)
    out = clf.augment_batch(black, torch.Generator().manual_seed(0))
    assert abs(out.mean() + 1) < 0.01 and 0.09 < out.std() < 0.11  # fill −1, noise σ 0.1
    images = torch.rand(64, 3, 16, 16) * 2 - 1
    first = clf.augment_batch(images, torch.Generator().manual_seed(1))
    again = clf.augment_batch(images, torch.Generator().manual_seed(1))
    assert torch.equal(first, again) and first.shape == images.shape
    assert (first - images).abs().mean() > 0.1  # moved, not just noised


def test_cache_key_covers_every_training_setting(tmp_path) -> None:
    from dataclasses import fields, replace

    base = clf.RECIPES["resnet18"]
    paths = {clf.cache_paths(tmp_path, "d", arch="resnet18", seed=0, recipe=base)[0]}
    changed = {"optimizer": "adamw_onecycle", "lr": 1e-3, "batch_size": 32, "epochs": 5,
               "augment": False, "val_fraction": 0.2}
    assert set(changed) == {f.name for f in fields(base)}
    for name, value in changed.items():
        paths.add(clf.cache_paths(tmp_path, "d", arch="resnet18", seed=0,
                                  recipe=replace(base, **{name: value}))[0])
    paths.add(clf.cache_paths(tmp_path, "d", arch="resnet18", seed=0, recipe=base,
                              weights_digest="abc")[0])
    assert len(paths) == len(changed) + 2


def test_cache_key_changes_with_the_augmentation(tmp_path, monkeypatch) -> None:
    """A classifier trained with an earlier augmentation is not reused after it changes."""
    base = clf.RECIPES["resnet18"]
    before = clf.cache_paths(tmp_path, "d", arch="resnet18", seed=0, recipe=base)[0]
    monkeypatch.setattr(clf, "AUGMENTATION", clf.AUGMENTATION + " (changed)")
    assert clf.cache_paths(tmp_path, "d", arch="resnet18", seed=0, recipe=base)[0] != before
    unaugmented = clf.RECIPES["small_cnn"]
    assert not unaugmented.augment  # its key does not depend on the augmentation
    key = clf.cache_paths(tmp_path, "d", arch="small_cnn", seed=0, recipe=unaugmented)[0]
    monkeypatch.setattr(clf, "AUGMENTATION", "another")
    assert clf.cache_paths(tmp_path, "d", arch="small_cnn", seed=0, recipe=unaugmented)[0] == key


def test_cache_key_changes_with_the_training_environment(tmp_path, monkeypatch) -> None:
    """Thread count, determinism, matmul precision, torch version and device change the
    trained weights: each gives another cache file."""
    cpu, recipe = torch.device("cpu"), clf.RECIPES["small_cnn"]

    def path() -> Path:
        environment = clf.training_environment(cpu)
        return clf.cache_paths(tmp_path, "d", arch="small_cnn", seed=0, recipe=recipe,
                               environment=environment)[0]

    threads, precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    paths = [path()]
    assert path() == paths[0]  # the same settings share a file
    try:
        torch.set_num_threads(threads + 1)
        paths.append(path())
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
        paths.append(path())
        torch.use_deterministic_algorithms(False)
        torch.set_float32_matmul_precision("medium" if precision != "medium" else "high")
        paths.append(path())
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)
        torch.set_float32_matmul_precision(precision)
    monkeypatch.setattr(torch, "__version__", torch.__version__ + ".other")
    paths.append(path())
    monkeypatch.undo()
    monkeypatch.setattr(clf, "device_name", lambda device: "NVIDIA H200")
    paths.append(path())
    assert len(set(paths)) == 6


def test_resnet18_keeps_the_best_validation_epoch(small_digits, monkeypatch) -> None:
    scores = []
    real_accuracy = clf.accuracy

    def recording(model, images, labels, batch_size=512):
        value = real_accuracy(model, images, labels, batch_size)
        scores.append((len(labels), value))
        return value

    monkeypatch.setattr(clf, "accuracy", recording)
    model, test_acc = train_classifier(
        *small_digits, arch="resnet18", num_classes=10, seed=0, epochs=4, batch_size=32
    )
    n_val = int(300 * clf.RECIPES["resnet18"].val_fraction)
    val_scores = [v for n, v in scores if n == n_val]
    assert len(val_scores) == 4
    _, _, val_x, val_y = clf._validation_split(
        small_digits[0], small_digits[1], clf.RECIPES["resnet18"], 0
    )
    assert real_accuracy(model, val_x, val_y) == max(val_scores)
    assert test_acc == scores[-1][1]


def test_resnet18_starts_from_local_weights(tmp_path) -> None:
    from torchvision.models import resnet18

    torch.manual_seed(5)
    pretrained = resnet18(weights=None)  # stands in for a local ImageNet state dict
    path = tmp_path / "resnet18.pth"
    torch.save(pretrained.state_dict(), path)
    model = build_classifier("resnet18", 1, 10)
    model.load_backbone(path)
    assert torch.equal(model.net.conv1.weight, pretrained.conv1.weight)
    assert model.net.fc.out_features == 10
    (tmp_path / "bad.pth").write_bytes(b"not a state dict")
    with pytest.raises(ValueError, match="classifier_weights"):
        model.load_backbone(tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="does not exist"):
        load_or_train_classifier(tmp_path, "d", *(torch.zeros(4, 1, 8, 8), torch.zeros(4).long(),
                                 torch.zeros(2, 1, 8, 8), torch.zeros(2).long()),
                                 arch="resnet18", num_classes=2, seed=0,
                                 weights=tmp_path / "missing.pth")


def test_unknown_arch_is_rejected() -> None:
    with pytest.raises(ValueError, match="allowed"):
        build_classifier("vit", 1, 10)


def test_cache_trains_once_then_loads_from_disk(small_digits, tmp_path, monkeypatch) -> None:
    calls = []
    real_train = clf.train_classifier

    def counting_train(*args, **kwargs):
        calls.append(kwargs)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(clf, "train_classifier", counting_train)
    first = load_or_train_classifier(tmp_path, "digits-8", *small_digits, **QUICK_ARGS)
    assert len(calls) == 1 and not first.loaded_from_cache
    assert first.path.exists() and first.path.with_suffix(".json").exists()
    assert {"digits-8", "small_cnn", "seed0", "ep1"} <= set(first.path.stem.split("__"))
    environment = clf.training_environment(torch.device("cpu"))  # in the key and the sidecar
    assert first.path == clf.cache_paths(tmp_path, "digits-8", arch="small_cnn", seed=0,
                                         recipe=clf.recipe_for("small_cnn", 1, 64),
                                         environment=environment)[0]
    assert json.loads(first.path.with_suffix(".json").read_text())["environment"] == environment
    mtime = first.path.stat().st_mtime_ns

    second = load_or_train_classifier(tmp_path, "digits-8", *small_digits, **QUICK_ARGS)
    assert len(calls) == 1, "the cached classifier was retrained"
    assert second.loaded_from_cache and second.path == first.path
    assert second.path.stat().st_mtime_ns == mtime
    assert second.test_accuracy == first.test_accuracy and second.arch == "small_cnn"
    assert _weights_digest(second.model) == _weights_digest(first.model)
    assert not second.model.training
    torch.testing.assert_close(
        second.model.features(small_digits[2][:4]), first.model.features(small_digits[2][:4])
    )

    # another seed is another classifier
    other_seed = {**QUICK_ARGS, "seed": 1}
    other = load_or_train_classifier(tmp_path, "digits-8", *small_digits, **other_seed)
    assert len(calls) == 2 and other.path != first.path


def _race_worker(cache_dir: str, data: tuple, barrier, queue) -> None:
    torch.set_num_threads(1)
    barrier.wait()
    result = load_or_train_classifier(Path(cache_dir), "digits-8", *data, **QUICK_ARGS)
    queue.put((result.loaded_from_cache, _weights_digest(result.model), result.test_accuracy))


def test_two_processes_train_once_and_agree(small_digits, tmp_path) -> None:
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    workers = [
        ctx.Process(target=_race_worker, args=(str(tmp_path), small_digits, barrier, queue))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert sorted(from_cache for from_cache, _, _ in results) == [False, True]
    assert results[0][1:] == results[1][1:]  # identical weights and accuracy
    assert len(list(tmp_path.glob("*.pt"))) == 1 and not list(tmp_path.glob("*.tmp"))


def test_translation_moves_whole_pixels_and_fills_black() -> None:
    x = torch.arange(2 * 5 * 6, dtype=torch.float32).reshape(2, 1, 5, 6) / 60
    out = clf.translate_pixels(x, torch.tensor([2, -1]), torch.tensor([-1, 0]))
    assert torch.equal(out[0, 0, :4, 2:], x[0, 0, 1:, :4])  # right 2, up 1: the same pixels
    assert (out[0, 0, 4, :] == -1).all() and (out[0, 0, :, :2] == -1).all()  # black fill
    assert torch.equal(out[1, 0, :, :5], x[1, 0, :, 1:]) and (out[1, 0, :, 5] == -1).all()


def test_rotation_samples_nearest_neighbours_with_black_fill() -> None:
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    same = clf.rotate_nearest(x, torch.zeros(3))
    assert torch.equal(same, x)
    out = clf.rotate_nearest(x, torch.full((3,), 0.15))  # ~8.6°
    kept = torch.isin(out, torch.cat([x.flatten(), torch.tensor([-1.0])]))
    assert kept.all()  # every value is an input pixel or the fill: nothing interpolated
    assert (out[:, :, 0, 0] == -1).all()  # a corner rotated out of the image is black


def _reference_resnet(tmp_path: Path, num_classes: int, seed: int = 3) -> tuple:
    """A whole torchvision ResNet-18 state dict as the paper's train_kld_classifier.py saves it
    (resnet18 with its fc replaced for the dataset), random but with non-trivial BN statistics."""
    from torchvision.models import resnet18

    torch.manual_seed(seed)
    net = resnet18(weights=None)
    net.fc = torch.nn.Linear(net.fc.in_features, num_classes)
    net.train()
    with torch.no_grad():
        net(torch.randn(8, 3, 32, 32))  # moves the running statistics off their defaults
    path = tmp_path / "resnet.pth"
    torch.save(net.state_dict(), path)
    return net.eval(), path


def test_a_whole_reference_checkpoint_is_used_without_training(tmp_path, monkeypatch) -> None:
    net, path = _reference_resnet(tmp_path, num_classes=4)
    images = torch.rand(12, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        before = net(images.repeat(1, 3, 1, 1))
    labels = before.argmax(1)
    labels[:3] = (labels[:3] + 1) % 4  # 9 of 12 right
    monkeypatch.setattr(clf, "train_classifier", lambda *a, **k: pytest.fail("trained"))
    result = load_or_train_classifier(tmp_path / "cache", "d", images, labels, images, labels,
                                      arch="resnet18", num_classes=4, seed=0, weights=path)
    assert result.weights_kind == "whole" and not result.loaded_from_cache
    with torch.no_grad():
        after = result.model(images)
    assert torch.allclose(after, before, atol=1e-5)
    assert torch.equal(clf.predict(result.model, images), before.argmax(1))
    assert result.test_accuracy == pytest.approx(0.75)
    assert not any((tmp_path / "cache").glob("*.pt"))  # nothing trained, nothing cached


def test_weights_kind_is_detected_and_a_wrong_head_is_named(tmp_path) -> None:
    from torchvision.models import resnet18

    whole = _reference_resnet(tmp_path, num_classes=10)[0].state_dict()
    imagenet = resnet18(weights=None).state_dict()  # 1000 classes: a backbone
    headless = {k: v for k, v in imagenet.items() if not k.startswith("fc.")}
    assert clf.weights_kind(whole, 10, tmp_path) == "whole"
    assert clf.weights_kind(imagenet, 10, tmp_path) == "backbone"
    assert clf.weights_kind(headless, 10, tmp_path) == "backbone"
    with pytest.raises(clf.ClassifierWeightsError,
                       match=r"has a head \(fc.weight\) for 10 classes, but the dataset has 7; "
                             r"allowed: a whole ResNet-18 for 7 classes"):
        clf.weights_kind(whole, 7, tmp_path / "resnet.pth")
    broken = tmp_path / "broken.pth"
    torch.save({k: v for k, v in whole.items() if k != "layer1.0.bn1.weight"}, broken)
    with pytest.raises(clf.ClassifierWeightsError, match=r"does not match torchvision's ResNet-18"):
        build_classifier("resnet18", 1, 10).load_whole(broken)


def test_the_validation_split_is_the_references() -> None:
    """train_kld_classifier.py: random_split 50,000/10,000 (FMNIST), 45,000/5,000 (CIFAR-10)."""
    from cl_sweeps.data.catalog import dataset_info

    for name, train, held_out in (("fashion_mnist", 60_000, 10_000), ("cifar10", 50_000, 5_000)):
        fraction = dataset_info(name).classifier_val_fraction
        recipe = clf.recipe_for("resnet18", val_fraction=fraction)
        x, y = torch.zeros(train, 1, 1, 1), torch.zeros(train, dtype=torch.long)
        assert len(clf._validation_split(x, y, recipe, seed=0)[2]) == held_out, name
    assert clf.recipe_for("small_cnn", val_fraction=0.5).val_fraction == 0  # it does not validate
