"""A plain PyTorch training loop over real images (torchvision ImageFolder) mixed with a synthaug export.

    synthaug export --per-class 2000 --out synth.h5
    python examples/train_with_synthetic.py --real data/fashion/train --test data/fashion/test --synthetic synth.h5
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

import synthaug
from synthaug.classify import SmallCNN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--synthetic", type=Path, required=True)
    parser.add_argument("--ratio", type=float, default=1.0, help="synthetic images per real image")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-batches", type=int, default=None)
    args = parser.parse_args()

    syn = synthaug.SyntheticDataset(args.synthetic)
    gray = syn.info.image_shape[0] == 1
    # The same transform for both sources: real files are decoded by Pillow, synthetic images arrive as PIL too.
    tf = transforms.Compose([transforms.Grayscale() if gray else transforms.Lambda(lambda im: im.convert("RGB")),
                             transforms.Resize(syn.info.image_shape[1:]), transforms.ToTensor(),
                             transforms.Normalize([0.5], [0.5])])
    real = datasets.ImageFolder(args.real, transform=tf)
    test = datasets.ImageFolder(args.test, transform=tf)
    syn.transform = tf
    assert real.class_to_idx == syn.class_to_idx, "export and folder must share their classes"
    train = synthaug.mix(real, syn, ratio=args.ratio, seed=0)
    loader = DataLoader(train, batch_size=128, shuffle=True, num_workers=2, persistent_workers=True)

    model = SmallCNN(syn.info.image_shape[0], len(syn.classes), syn.info.image_shape[1])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for epoch in range(args.epochs):
        model.train()
        for i, (x, y) in enumerate(loader):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if args.max_batches and i + 1 >= args.max_batches:
                break
        print(f"epoch {epoch + 1}: last loss {loss.item():.3f} on {len(train)} images ({len(real)} real)")

    model.eval()
    correct = 0
    with torch.inference_mode():
        for x, y in DataLoader(test, batch_size=512, num_workers=2):
            correct += int((model(x).argmax(1) == y).sum())
    print(f"test accuracy on real images: {100 * correct / len(test):.2f}%")


if __name__ == "__main__":
    main()
