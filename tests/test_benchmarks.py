"""The benchmark scripts run end to end on tiny budgets: each prints its table and writes its JSON."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from synthaug.selection import SEARCHED_AUGMENTS

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _bench(name: str, args: list[str], tmp_path: Path) -> tuple[str, dict]:
    """Run benchmarks/NAME.py with ARGS and --json; return its stdout and the JSON it wrote."""
    out = tmp_path / f"{name}.json"
    env = {**os.environ, "SYNTHAUG_CACHE_DIR": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, str(BENCHMARKS / f"{name}.py"), *args, "--json", str(out)],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout, json.loads(out.read_text())


@pytest.mark.slow
def test_bench_archs_and_quality(tiny_run, digits_splits, tmp_path):
    real, test = str(digits_splits / "train"), str(digits_splits / "test")
    stdout, result = _bench("bench_archs", ["--real", real, "--test", test, "--run", f"conv={tiny_run}",
                                            "--run", f"conv-t={tiny_run}@t0.5", "--per-class", "20", "--steps", "5"],
                            tmp_path)
    assert "| conv |" in stdout and "| real data |" in stdout
    assert result["rows"]["real data"]["label_agreement"] > 0.5  # the real test images, as a reference
    row = result["rows"]["conv"]
    assert 0.0 <= row["coverage"] <= 1.0 and 0.0 <= row["label_agreement"] <= 1.0 and row["train_images"] == 200
    assert row["truncation"] is None and result["rows"]["conv-t"]["truncation"] == 0.5
    stdout, result = _bench("bench_quality", ["--run", str(tiny_run), "--real", real, "--test", test,
                                              "--per-class", "20", "--steps", "5"], tmp_path)
    assert "| synthetic |" in stdout and "| recall |" in stdout
    assert result["benchmark"]["results"]["synthetic"]["train_images"] == 200


def test_bench_generation_and_scan(tiny_run, tmp_path):
    stdout, result = _bench("bench_generation", ["--run", str(tiny_run), "--images", "256",
                                                 "--batch-sizes", "16,64"], tmp_path)
    assert "| 16 |" in stdout and "| 64 |" in stdout and "byte-identical" in stdout
    stdout, result = _bench("bench_scan", ["--files", "300"], tmp_path)
    assert "300 files" in stdout


def test_bench_fresh(tiny_run, digits_dir, tmp_path):
    stdout, result = _bench("bench_fresh", ["--source", str(tiny_run), "--images", "1280", "--repeats", "1", "--soft",
                                            "--filter", "0.05", "--teacher", str(digits_dir), "--teacher-steps", "1"],
                            tmp_path)
    assert "| fresh every epoch |" in stdout and "| fresh + soft labels |" in stdout
    assert result["images_per_epoch"] == 1280 and result["ratio"]["export in memory"] == 1.0
    assert set(result["seconds"]) == {"export in memory", "fresh every epoch", "fresh + soft labels",
                                      "fresh + filter 0.05", "fresh + soft labels + filter 0.05"}


@pytest.mark.slow
def test_bench_classifier_step(tmp_path):
    stdout, result = _bench("bench_classifier_step", ["--steps", "2", "--repeats", "1"], tmp_path)
    assert "| torch.compile, 2 threads |" in stdout
    assert all(len(v) == 1 and v[0] > 0 for v in result["images_per_s"].values())


@pytest.mark.slow
def test_bench_recipes_resumes_row_by_row(digits_splits, tmp_path):
    """Baselines, then the chosen one, on a data root whose fashion/ is digits; a second call trains nothing."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "fashion").symlink_to(digits_splits)
    args = ["--data", str(root), "--protocols", "fashion-50%", "--steps", "4", "--seeds", "1"]
    _, rows = _bench("bench_recipes", [*args, "--stage", "baselines"], tmp_path)
    assert sorted(k.split("|")[1] for k in rows["rows"]) == sorted(
        ["plain", "none", "erasing", "trivial", "trivial+erasing", "randaugment+erasing", "mixup", "cutmix"])
    assert all(r["rare_recall"] is None and r["seconds"] > 0 for r in rows["rows"].values())  # even classes
    _, rows = _bench("bench_recipes", [*args, "--stage", "chosen"], tmp_path)
    (key, choice), = rows["choices"].items()
    assert key == "fashion-50%|4|3 folds|augments " + ",".join(SEARCHED_AUGMENTS)  # searches before "none" keep theirs
    assert choice["folds"] == 3  # 70 validation images: pooled over 3 folds
    chosen = choice["name"]
    assert {f"fashion-50%|{chosen}|4|0", f"fashion-50%|{chosen}|8|0"} <= set(rows["rows"])
    before = (tmp_path / "bench_recipes.json").read_text()
    stdout, _ = _bench("bench_recipes", [*args, "--stage", "chosen"], tmp_path)
    assert (tmp_path / "bench_recipes.json").read_text() == before  # every row was there: nothing trained again
    _, rows = _bench("bench_recipes", [*args, "--stage", "chosen", "--baseline", "erasing + weighted"], tmp_path)
    assert rows["choices"]["fashion-50%|4|named erasing + weighted"] == {"name": "erasing + weighted", "named": True}
    assert {"fashion-50%|erasing + weighted|4|0", "fashion-50%|erasing + weighted|8|0"} <= set(rows["rows"])
    stdout, _ = _bench("bench_recipes", [*args, "--table"], tmp_path)
    assert f"| **{chosen}** (chosen on 3 validation folds) | 4 |" in stdout
    assert "| **erasing + weighted** (named) | 4 |" in stdout


def rare_digits(digits_splits: Path, tmp_path: Path) -> Path:
    """A data folder whose fashion/ is digits with 3, 5 and 8 named Coat, Shirt and Pullover (the rare protocol's
    classes)."""
    root = tmp_path / "data"
    for split in ("train", "test"):
        for folder in sorted((digits_splits / split).iterdir()):
            name = {"digit3": "Coat", "digit5": "Shirt", "digit8": "Pullover"}.get(folder.name, folder.name)
            (root / "fashion" / split).mkdir(parents=True, exist_ok=True)
            (root / "fashion" / split / name).symlink_to(folder)
    return root


@pytest.mark.slow
def test_bench_recipes_translated_stage_tops_up_the_rare_protocol(digits_splits, tmp_path):
    """The rare protocol on digits: translated top-up and its oversampled control on top of a named baseline; the
    translation is kept and a second call trains nothing."""
    args = ["--data", str(rare_digits(digits_splits, tmp_path)), "--protocols", "fashion-rare", "--steps", "4",
            "--seeds", "1", "--baseline", "weighted", "--work", str(tmp_path / "work"), "--stage", "translated"]
    _, rows = _bench("bench_recipes", args, tmp_path)
    assert set(rows["rows"]) == {"fashion-rare|weighted + translated top-up|4|0",
                                 "fashion-rare|weighted + oversampled top-up|4|0"}
    translation = rows["translations"]["fashion-rare|translated top-up"]
    # each rare class keeps 1% of its 140 training images (1) and is topped up to the largest class (140)
    assert {c: v["wanted"] for c, v in translation["per_class"].items()} == {"Coat": 139, "Pullover": 139,
                                                                            "Shirt": 139}
    assert translation["classifier_loss"] == "weighted" and (tmp_path / "work" / "fashion-rare" /
                                                             "translated.npz").is_file()
    before = (tmp_path / "bench_recipes.json").read_text()
    _bench("bench_recipes", args, tmp_path)
    assert (tmp_path / "bench_recipes.json").read_text() == before


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dagan", "bagan"])
def test_bench_recipes_rare_generator_stages_top_up_the_rare_protocol(digits_splits, tmp_path, kind):
    """The rare protocol on digits: a DAGAN or a BAGAN fitted on the cut folder tops the rare classes up on top of a
    named baseline; the generator and a sample grid are kept, and a second call trains nothing."""
    args = ["--data", str(rare_digits(digits_splits, tmp_path)), "--protocols", "fashion-rare", "--steps", "4",
            "--seeds", "2", "--baseline", "weighted", "--work", str(tmp_path / "work"), "--stage", kind,
            f"--{kind}-steps", "3"]
    _, rows = _bench("bench_recipes", args, tmp_path)
    label = f"{kind.upper()} top-up (3 steps)"  # a budget other than the default's is named in its rows and files
    assert set(rows["rows"]) == {f"fashion-rare|weighted + {label}|4|{seed}" for seed in (0, 1)}
    fit = rows[kind][f"fashion-rare|{label}"]
    assert fit["config"]["steps"] == 3 and fit["seconds"] > 0
    work = tmp_path / "work" / "fashion-rare"
    assert (work / f"{kind}-3.pt").is_file() and (work / f"{kind}-3-samples.png").stat().st_size > 1000
    before = (tmp_path / "bench_recipes.json").read_text()
    _bench("bench_recipes", args, tmp_path)
    assert (tmp_path / "bench_recipes.json").read_text() == before


@pytest.mark.slow
def test_device_check_runs_on_the_cpu(tmp_path):
    """The GPU machine's one command, in its quick CPU form: every section measures something real."""
    stdout, result = _bench("device_check", ["--device", "cpu", "--quick"], tmp_path)
    assert "| forward | dcgan 64 px bf16 |" in stdout and "| export hdf5 |" in stdout
    forward = {(r["arch"], r["side"], r["precision"]): r for r in result["forward"]}
    assert set(forward) == {(a, s, p) for a in ("dcgan", "sngan") for s in (32, 64) for p in ("fp32", "bf16")}
    for r in forward.values():
        assert r["tflops"] == pytest.approx(r["gflop_per_image"] * r["images_per_s"] / 1e3)
        fitted = [b for b in r["batches"] if "images_per_s" in b]
        assert r["best_batch"] == max(fitted, key=lambda b: b["images_per_s"])["batch"]
    hdf5 = next(r for r in result["export"] if r["format"] == "hdf5")
    assert hdf5["images"] == 640 and hdf5["over_bare_forward"] == pytest.approx(
        hdf5["images_per_s"] / hdf5["bare_forward_images_per_s"])
    assert [(r["side"], r["arch"]) for r in result["fit"]] == [(32, "dcgan"), (64, "sngan")]
    assert all(r["images_per_s"] > 0 for r in result["fit"] + result["classifier"])
    assert result["oom"]["ok"] and result["oom"]["same_images"] and result["oom"]["halvings"] >= 1
    assert result["determinism"]["default"]["identical"] and result["determinism"]["deterministic"]["identical"]
    assert result["machine"]["device"] == "cpu" and result["skipped"] == []


def test_bench_baselines(tmp_path):
    stdout, result = _bench("bench_baselines", ["--steps", "8", "--base-steps", "2", "--repeats", "1"], tmp_path)
    assert "| trivial |" in stdout and "| balanced sampling |" in stdout and "| cmo |" in stdout
    assert set(result["images_per_s"]) >= {"default (shift, ce)", "mixup", "logit-adjusted"}
    assert all(len(v) == 1 and v[0] > 0 for v in result["images_per_s"].values())


@pytest.mark.slow
def test_bench_tune_times_tune_one_at_a_time_side_by_side_and_probe_first(tiny_run, tmp_path):
    args = ["--run", str(tiny_run), "--baseline", "plain", "--steps", "8", "--teacher-steps", "4",
            "--modes", "side by side,one at a time,probe first"]
    stdout, result = _bench("bench_tune", args, tmp_path)
    assert "| side by side |" in stdout and "| one at a time | " in stdout and "| 1.00 |" in stdout
    assert sorted(k.rsplit("|", 1)[1] for k in result) == ["one at a time", "probe first", "side by side"]
    for mode, r in ((k.rsplit("|", 1)[1], r) for k, r in result.items()):  # each a whole tune, its search table
        full = {t["stage"] for t in r["trials"]} >= {"snapshots", "latent scale", "use"}
        assert r["wall_seconds"] > 0 and r["baseline"]["name"] == "plain"
        assert full if mode != "probe first" else (r["reach"]["searched"] == full and r["trials"][0]["stage"] == "use")
        assert (r["teacher"] or {}).get("steps") == (4 if full else None)  # the tiny folder is even: no top-up


def test_tune_on_top_of_a_new_choice_gets_its_own_entry():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_recipes", BENCHMARKS / "bench_recipes.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.tune_key({}, "fashion-3000", "plain") == "fashion-3000"  # the first tune keeps the plain name
    tuned = {"fashion-3000": {"advice": {"baseline": "plain"}}}
    assert bench.tune_key(tuned, "fashion-3000", "plain") == "fashion-3000"  # kept: not tuned again
    key = bench.tune_key(tuned, "fashion-3000", "plain + balanced-sampling")
    assert key == "fashion-3000|plain + balanced-sampling" and key not in tuned  # tuned anew, the old verdict stays
