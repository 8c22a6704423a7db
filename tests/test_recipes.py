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
