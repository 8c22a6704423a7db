"""The default recipe's epoch budget: the same compute whatever the folder's size and resolution."""
from __future__ import annotations

import math

import torch

from synthaug.recipes import IMAGES_TO_SEE, image_cost, recipe_for_folder


def test_budget_scales_with_the_folder_and_the_cost_of_an_image(digits_dir):
    own = recipe_for_folder(digits_dir, torch.device("cpu"))  # 1797 8-px digits
    assert own.settings["epochs"] == math.ceil(IMAGES_TO_SEE / 1797)
    wide = recipe_for_folder(digits_dir, torch.device("cpu"), resolution=32)
    assert wide.settings["epochs"] == math.ceil(IMAGES_TO_SEE / 2.2 / 1797)  # 32 px costs 2.2 times 28 px
    assert any("10 minutes on 2 CPU cores" in r for r in own.reasons)
    assert image_cost(28) == 1.0 and image_cost(64) == 4 * image_cost(32)
    assert recipe_for_folder(digits_dir, torch.device("cpu"), user={"epochs": 3}).settings.get("epochs") is None


def test_past_32_px_the_recipe_trains_a_residual_network(tmp_path):
    from conftest import write_rgb_digits

    big = write_rgb_digits(tmp_path / "big", {0: 20, 1: 20}, side=64)
    cpu = recipe_for_folder(big, torch.device("cpu"))
    assert (cpu.arch, cpu.resolution) == ("dcgan", 32) and "set --resolution" in cpu.reasons[0]
    gpu = recipe_for_folder(big, torch.device("cuda"))  # the recipe reads only the device's kind
    assert (gpu.arch, gpu.resolution, gpu.ema) == ("sngan", 64, True)
    assert gpu.width == 64 and gpu.settings["batch_size"] == 128
    assert gpu.settings["augment"] == "translation,cutout,color" and any("not yet measured" in r for r in gpu.reasons)
    asked = recipe_for_folder(big, torch.device("cpu"), resolution=64)
    assert asked.arch == "sngan" and asked.width == 32
    assert asked.settings["epochs"] < cpu.settings["epochs"]  # an sngan image at 64 px costs more
    huge = write_rgb_digits(tmp_path / "huge", {0: 4, 1: 4}, side=256)
    assert recipe_for_folder(huge, torch.device("cuda")).resolution == 128
    small_gpu = recipe_for_folder(write_rgb_digits(tmp_path / "small", {0: 4, 1: 4}, side=32), torch.device("cuda"))
    assert small_gpu.arch == "dcgan" and small_gpu.settings["batch_size"] == 256
