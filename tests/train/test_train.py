"""Training on real digits: run folder contents, safe checkpoints, resume, and real improvement."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import synthaug
from synthaug.runs import load_safe
from synthaug.config import load_run_config
from synthaug.data.folder import load_image_folder
from synthaug.errors import CheckpointError, SynthaugError
from synthaug.engine import generate
from synthaug.models import build_models


def test_run_folder_holds_config_checkpoints_samples_and_log(tiny_run):
    for name in ("config.json", "checkpoint.pt", "generator.pt", "log.jsonl"):
        assert (tiny_run / name).is_file(), name
    cfg = load_run_config(tiny_run)
    assert cfg.model.arch == "conv" and cfg.model.resolution == 8 and cfg.data.num_images == 1797
    assert cfg.train.max_steps == 10 and cfg.train.loss == "bce"
    state = load_safe(tiny_run / "checkpoint.pt")  # weights_only=True
    assert state["step"] == 10 and {"generator", "discriminator", "opt_g", "opt_d", "torch_rng"} <= set(state)
    rows = [json.loads(line) for line in (tiny_run / "log.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 1 and {"d_loss", "g_loss", "d_real", "d_fake", "d_grad_norm"} <= set(rows[0])


def test_generator_contract(tiny_run):
    g = synthaug.load_generator(tiny_run)
    assert not g.training and g.latent_dim == 100 and g.num_classes == 10
    assert g.image_shape == (1, 8, 8) and g.class_names[0] == "digit0"
    x = g(torch.randn(4, g.latent_dim), torch.tensor([0, 1, 2, 3]))
    assert x.shape == (4, 1, 8, 8) and float(x.abs().max()) <= 1.0


def _agreement(clf, run) -> float:
    gen = synthaug.load_generator(run)
    labels = np.repeat(np.arange(10), 50)
    images = generate(gen, labels, seed=3).reshape(len(labels), -1).numpy() / 255.0
    return float((clf.predict(images) == labels).mean())


@pytest.mark.slow
def test_a_short_fit_improves_label_agreement(digits_dir, tmp_path):
    """A real-data classifier recognises the conditioning class far more often after training than at step 1."""
    real = load_image_folder(digits_dir, progress=False)
    clf = LogisticRegression(max_iter=2000).fit(real.images.reshape(len(real), -1).numpy() / 255.0, real.labels)
    first = synthaug.fit(digits_dir, tmp_path / "first", arch="mlp", max_steps=1, batch_size=64, progress=False)
    trained = synthaug.fit(digits_dir, tmp_path / "trained", arch="mlp", epochs=6, batch_size=16, sample_every=1,
                           progress=False)
    before, after = _agreement(clf, first), _agreement(clf, trained)
    assert after > before + 0.3, (before, after)
    assert len(list((trained / "samples").glob("epoch_*.png"))) == 6


def test_resume_continues_where_it_stopped(digits_dir, tmp_path):
    run = synthaug.fit(digits_dir, tmp_path / "r", arch="mlp", epochs=1, max_steps=5, batch_size=32, progress=False)
    with pytest.raises(SynthaugError, match="already holds a run"):
        synthaug.fit(digits_dir, run, arch="mlp", progress=False)
    synthaug.fit(digits_dir, run, resume=True, max_steps=12, progress=False)
    assert load_safe(run / "checkpoint.pt")["step"] == 12
    with pytest.raises(SynthaugError, match="only"):
        synthaug.fit(digits_dir, run, resume=True, lr_g=1.0, progress=False)


def test_resume_with_the_epoch_budget_spent_says_so(digits_dir, tmp_path):
    run = synthaug.fit(digits_dir, tmp_path / "r", arch="mlp", epochs=1, batch_size=256, progress=False)
    steps = load_safe(run / "checkpoint.pt")["step"]
    with pytest.warns(UserWarning, match="already trained 1 of 1 epochs; pass a larger --epochs"):
        synthaug.fit(digits_dir, run, resume=True, progress=False)
    assert load_safe(run / "checkpoint.pt")["step"] == steps


def straight_and_resumed(data: Path, tmp_path: Path, stop: int, steps: int, **settings) -> tuple[dict, dict]:
    """The checkpoints of a fit run `steps` straight, and of one stopped at `stop` and resumed to `steps`."""
    kwargs = dict(epochs=1, batch_size=32, progress=False, **settings)
    straight = synthaug.fit(data, tmp_path / "a", max_steps=steps, **kwargs)
    split = synthaug.fit(data, tmp_path / "b", max_steps=stop, **kwargs)
    synthaug.fit(data, split, resume=True, max_steps=steps, progress=False)
    return load_safe(straight / "checkpoint.pt"), load_safe(split / "checkpoint.pt")


def test_resume_equals_uninterrupted(digits_dir, tmp_path):
    """Stopping after 6 steps and resuming to 14 gives the same weights as 14 steps straight (same RNG state)."""
    a, b = straight_and_resumed(digits_dir, tmp_path, 6, 14, arch="mlp", seed=5)
    for key in a["generator"]:
        torch.testing.assert_close(a["generator"][key], b["generator"][key])


def test_nothing_to_resume_and_bad_settings(digits_dir, tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        synthaug.fit(digits_dir, tmp_path / "none", resume=True, progress=False)
    with pytest.raises(SynthaugError, match=r"unknown fit settings: \['learning_rate'\]"):
        synthaug.fit(digits_dir, tmp_path / "x", learning_rate=3, progress=False)
    for setting, message in (({"minutes": -1}, "minutes must be positive"), ({"epochs": -1}, "epochs must be at least 1"),
                             ({"max_steps": -3}, "max steps must be at least 1"),
                             ({"batch_size": 0}, "batch size must be at least 1"),
                             ({"resolution": 0}, "resolution must be at least 1")):
        with pytest.raises(SynthaugError, match=message):
            synthaug.fit(digits_dir, tmp_path / "z", arch="mlp", progress=False, **setting)
        assert not (tmp_path / "z").exists()  # nothing half-made blocks the corrected re-run
    with pytest.raises(SynthaugError, match="unknown architecture"):
        synthaug.fit(digits_dir, tmp_path / "y", arch="transformer", progress=False)


def test_class_balanced_epochs_draw_every_class_equally():
    from synthaug.train import epoch_order

    labels = torch.cat([torch.zeros(9000, dtype=torch.long), torch.ones(900, dtype=torch.long),
                        torch.full((100,), 2, dtype=torch.long)])
    plain = epoch_order(labels, torch.Generator().manual_seed(0))
    assert torch.equal(torch.sort(plain).values, torch.arange(10000))  # a permutation
    order = epoch_order(labels, torch.Generator().manual_seed(0), class_balance=True)
    again = epoch_order(labels, torch.Generator().manual_seed(0), class_balance=True)
    assert torch.equal(order, again) and len(order) == 10000
    share = torch.bincount(labels[order], minlength=3).float() / len(order)
    assert torch.allclose(share, torch.full((3,), 1 / 3), atol=0.03), share
    assert len(torch.unique(order[labels[order] == 2])) > 90  # the rare class's images are all drawn, repeatedly


def test_class_balanced_fit_is_recorded_and_resumes(digits_dir, tmp_path):
    a, b = straight_and_resumed(digits_dir, tmp_path, 4, 10, arch="mlp", seed=2, class_balance=True)
    assert load_run_config(tmp_path / "a").train.class_balance is True
    for key in a["generator"]:
        torch.testing.assert_close(a["generator"][key], b["generator"][key])


def test_lecam_regularises_the_discriminator_and_resumes_exactly(digits_dir, tmp_path):
    kwargs = dict(arch="dcgan", epochs=1, batch_size=32, progress=False, seed=3)
    plain = synthaug.fit(digits_dir, tmp_path / "plain", max_steps=8, **kwargs)
    straight = synthaug.fit(digits_dir, tmp_path / "a", max_steps=8, lecam=0.5, **kwargs)
    assert load_run_config(straight).train.lecam == 0.5
    split = synthaug.fit(digits_dir, tmp_path / "b", max_steps=3, lecam=0.5, **kwargs)
    synthaug.fit(digits_dir, split, resume=True, max_steps=8, progress=False)
    a, b, p = (load_safe(r / "checkpoint.pt") for r in (straight, split, plain))
    assert a["lecam_anchors"].abs().sum() > 0  # the anchors follow D's outputs
    torch.testing.assert_close(a["lecam_anchors"], b["lecam_anchors"])  # and travel with the checkpoint
    for key in a["discriminator"]:
        torch.testing.assert_close(a["discriminator"][key], b["discriminator"][key])
    assert any(not torch.equal(a["discriminator"][k], p["discriminator"][k]) for k in a["discriminator"])
    with pytest.raises(synthaug.SynthaugError, match="regulariser weights must be >= 0"):
        synthaug.fit(digits_dir, tmp_path / "c", max_steps=1, lecam=-1.0, **kwargs)


def test_lecam_term_pushes_outputs_towards_the_other_sides_average():
    from synthaug.train import lecam_term

    anchors = torch.tensor([1.0, -1.0])  # real average 1, fake average -1
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([0.0, -3.0])
    term = lecam_term(real, fake, anchors)
    # real outputs above the fake average (-1): (0+1)^2 and (2+1)^2; fake outputs below the real average (1): (1-0)^2
    # and (1+3)^2
    assert term.item() == pytest.approx((1 + 9) / 2 + (1 + 16) / 2)
    assert torch.allclose(anchors, torch.tensor([0.99 * 1 + 0.01 * 1.0, 0.99 * -1 + 0.01 * -1.5]))


@pytest.mark.parametrize("arch", ["mlp-maxout", "dcgan", "sngan", "sngan-cnn"])
def test_every_architecture_trains_a_step(digits_dir, tmp_path, arch):
    run = synthaug.fit(digits_dir, tmp_path / arch, arch=arch, epochs=1, max_steps=3, batch_size=16,
                       progress=False)
    state = load_safe(run / "checkpoint.pt")
    assert state["step"] == 3
    torch.manual_seed(0)  # the run's seed: the weights it started from
    g0, d0 = build_models(load_run_config(run).model)
    for net, key in ((g0, "generator"), (d0, "discriminator")):
        moved = [k for k, v in net.state_dict().items() if v.is_floating_point() and not k.endswith(("running_mean",
                 "running_var")) and not torch.equal(v, state[key][k])]
        assert moved, f"{key}: no parameter changed in 3 steps"
    fresh = synthaug.load_generator(run)
    assert fresh.image_shape == (1, 8, 8)
    if arch.startswith("sngan"):
        assert "generator_ema" in state
