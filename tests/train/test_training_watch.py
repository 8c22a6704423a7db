"""What a run shows about itself: per-epoch figures and diversity, TensorBoard, DiffAugment, faults, selection."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

import synthaug
from synthaug.augment import cutout, diff_augment, list_policies, parse_policy, translation
from synthaug.runs import load_safe
from synthaug.errors import SynthaugError
from synthaug.metrics import select_best_epoch
from synthaug.monitor import class_diversity


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory, digits_dir):
    """sngan, two epochs on digits, with every DiffAugment policy on."""
    out = tmp_path_factory.mktemp("watch") / "run"
    return synthaug.fit(digits_dir, out, epochs=2, batch_size=64, augment="translation,cutout,color", sample_every=1,
                        progress=False)


def test_per_epoch_figures_and_diversity_log(two_epoch_run):
    rows = [json.loads(line) for line in (two_epoch_run / "epochs.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(len(r["diversity_per_class"]) == 10 and min(r["diversity_per_class"]) > 0.02 for r in rows)
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= set(rows[0])
    with Image.open(two_epoch_run / "curves.png") as im:
        assert im.format == "PNG" and im.width > 800
    with Image.open(two_epoch_run / "samples.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 2
    assert json.loads((two_epoch_run / "config.json").read_text())["train"]["augment"] == "translation,cutout,color"


def test_tensorboard_gets_the_same_scalars_and_grids(two_epoch_run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(two_epoch_run / "tensorboard")).Reload()
    tags = acc.Tags()
    assert {"train/d_loss", "train/g_loss", "train/d_real", "train/d_grad_norm", "diversity/digit0"} <= set(
        tags["scalars"])
    assert "samples" in tags["images"] and len(acc.Images("samples")) == 2
    logged = [json.loads(line)["d_loss"] for line in (two_epoch_run / "log.jsonl").read_text().splitlines()]
    assert [e.value for e in acc.Scalars("train/d_loss")] == pytest.approx(logged, rel=1e-6)


def test_class_diversity_detects_a_collapsed_class():
    images = torch.rand(20, 1, 8, 8)
    labels = torch.arange(2).repeat_interleave(10)
    images[labels == 1] = images[labels == 1][0]  # class 1: ten copies of one image
    div = class_diversity(images, labels, 2)
    assert div[0] > 0.2 and div[1] == pytest.approx(0.0, abs=1e-4)


def test_diff_augment_policies_keep_shape_and_gradients():
    assert parse_policy("translation, cutout") == ("translation", "cutout") and parse_policy("") == ()
    with pytest.raises(SynthaugError, match="unknown augmentation"):
        parse_policy("rotate")
    x = torch.randn(6, 3, 16, 16, requires_grad=True)
    y = diff_augment(x, tuple(list_policies()))
    y.square().sum().backward()
    assert y.shape == x.shape and x.grad is not None and x.grad.abs().sum() > 0
    ones = torch.ones(64, 1, 8, 8)
    # translation shifts whole pixels in, zeros fill; cutout zeroes at most a (side/2)^2 square
    t = translation(ones, 0.25)
    assert set(t.unique().tolist()) <= {0.0, 1.0} and (t.flatten(1).sum(1) >= 36).all()
    c = cutout(ones)
    zeros = (c == 0).flatten(1).sum(1)
    assert (zeros <= 16).all() and (zeros > 0).any()


def test_unknown_augment_is_refused_before_training(digits_dir, tmp_path):
    with pytest.raises(SynthaugError, match="unknown augmentation"):
        synthaug.fit(digits_dir, tmp_path / "x", augment="mixup", progress=False)
    assert not (tmp_path / "x").exists()


def test_divergence_restores_once_then_stops_with_a_clear_message(digits_dir, tmp_path):
    """An absurd learning rate makes the losses non-finite: one restore with halved rates, then a clear stop."""
    run = tmp_path / "nan"
    with pytest.warns(UserWarning, match="non-finite loss"), pytest.raises(SynthaugError, match="diverged"):
        synthaug.fit(digits_dir, run, arch="mlp", epochs=3, batch_size=16, lr_d=1e30, lr_g=1e30, progress=False)
    state = load_safe(run / "checkpoint.pt")  # what existed before the fault is intact and finite
    assert all(torch.isfinite(v).all() for v in state["generator"].values() if v.is_floating_point())
    synthaug.load_generator(run)


def test_select_best_scores_on_a_held_out_split(digits_dir, tmp_path):
    run = synthaug.fit(digits_dir, tmp_path / "sel", arch="mlp", epochs=3, batch_size=32, sample_every=1,
                       progress=False)
    result = select_best_epoch(run, per_class=50, progress=False)
    assert set(result["scores"]) == {"epoch_0001.pt", "epoch_0002.pt", "epoch_0003.pt"}
    assert result["held_out_images"] == pytest.approx(0.1 * 1797, abs=10)
    best = min(result["scores"], key=lambda k: result["scores"][k]["frechet_distance"])
    assert result["best"] == best
    assert (run / "generator.pt").read_bytes() == (run / "generators" / best).read_bytes()
    assert (run / "generator-last.pt").is_file()
    later = select_best_epoch(run, per_class=50, from_epoch=2, progress=False)
    assert set(later["scores"]) == {"epoch_0002.pt", "epoch_0003.pt"}
    assert later["scores"]["epoch_0002.pt"] == result["scores"]["epoch_0002.pt"]  # the same score, recomputed
    with pytest.raises(SynthaugError, match="from epoch 4 on"):
        select_best_epoch(run, from_epoch=4, progress=False)


def test_a_discriminator_that_wins_outright_is_reported(digits_dir, tmp_path):
    """A frozen generator (lr_g = 0) lets D reject every fake with near certainty: the run says so."""
    with pytest.warns(UserWarning, match="discriminator wins outright"):
        synthaug.fit(digits_dir, tmp_path / "dom", arch="mlp", epochs=3, batch_size=16, lr_g=0.0, sample_every=1,
                     progress=False)
