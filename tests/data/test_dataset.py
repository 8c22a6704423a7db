"""SyntheticDataset through real DataLoaders with worker processes, both storage paths, and mixing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch.utils.data import DataLoader
from torchvision.transforms import ToTensor

import synthaug
from synthaug import ExportConfig
from synthaug import SyntheticDataset, mix


@pytest.fixture(scope="module")
def export_path(tiny_run, tmp_path_factory):
    return synthaug.export(tiny_run, tmp_path_factory.mktemp("exp") / "s.h5",
                           ExportConfig(per_class=30, seed=0), progress=False)


def test_items_follow_the_torchvision_contract(export_path):
    ds = SyntheticDataset(export_path)
    assert len(ds) == 300 and ds.in_memory
    assert ds.classes == [f"digit{i}" for i in range(10)] and ds.class_to_idx["digit3"] == 3
    image, label = ds[31]
    assert image.dtype == torch.float32 and image.shape == (1, 8, 8)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert label == 1 and ds.targets[31] == 1
    with pytest.raises(IndexError):
        ds[300]


@pytest.mark.parametrize("budget", [1 << 30, None])
def test_dataloader_with_workers_and_shuffle_sees_every_item_once(export_path, budget):
    ds = SyntheticDataset(export_path, memory_budget=budget)
    assert ds.in_memory is (budget is not None)  # None: always read from the file
    loader = DataLoader(ds, batch_size=32, shuffle=True, num_workers=2, generator=torch.Generator().manual_seed(0))
    seen = torch.cat([images.flatten(1).sum(1) for images, _ in loader])
    labels = torch.cat([y for _, y in loader])
    reference = torch.stack([ds[i][0].flatten().sum() for i in range(len(ds))])
    assert len(seen) == 300
    torch.testing.assert_close(torch.sort(seen).values, torch.sort(reference).values)
    assert torch.bincount(labels).tolist() == [30] * 10


def test_memory_and_file_paths_agree(export_path):
    a, b = SyntheticDataset(export_path), SyntheticDataset(export_path, memory_budget=0)
    for i in (0, 17, 299):
        torch.testing.assert_close(a[i][0], b[i][0])
    assert a.targets == b.targets


def test_transform_gets_a_pil_image_and_mixes_with_imagefolder(export_path, digits_dir):
    syn = SyntheticDataset(export_path, transform=ToTensor())
    real = torchvision.datasets.ImageFolder(digits_dir, transform=lambda im: ToTensor()(im.convert("L")))
    assert syn.class_to_idx == real.class_to_idx
    both = mix(real, syn, ratio=0.1, seed=0)
    assert len(both) == len(real) + 180
    loader = DataLoader(both, batch_size=64, shuffle=True, num_workers=2)
    images, labels = next(iter(loader))
    assert images.shape == (64, 1, 8, 8) and labels.max() < 10
    np.testing.assert_allclose(syn[0][0].numpy(), SyntheticDataset(export_path)[0][0].numpy(), atol=1e-6)


def test_generated_dataset_matches_the_export_item_for_item_with_workers(tiny_run, export_path):
    live = synthaug.GeneratedDataset(tiny_run, per_class=30, seed=0)
    stored = SyntheticDataset(export_path)
    assert len(live) == len(stored) and live.classes == stored.classes
    for i in (0, 123, 299):
        torch.testing.assert_close(live[i][0], stored[i][0])
        assert live[i][1] == stored[i][1]
    loader = DataLoader(live, batch_size=50, shuffle=False, num_workers=2)
    images = torch.cat([x for x, _ in loader])
    torch.testing.assert_close(images, torch.stack([stored[i][0] for i in range(len(stored))]))


@pytest.mark.parametrize("budget", [1 << 30, None])
def test_batched_reads_equal_item_reads(export_path, budget):
    ds = SyntheticDataset(export_path, memory_budget=budget)
    order = [299, 3, 3, 150, -1]
    batch = ds.__getitems__(order)
    for (image, label), i in zip(batch, order):
        expected_image, expected_label = ds[i]
        torch.testing.assert_close(image, expected_image)
        assert label == expected_label
