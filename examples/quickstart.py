"""The whole path in Python: labelled folder -> cGAN -> tune's advice -> balanced HDF5 export -> DataLoader ->
benchmark on top of the best baseline.

    python examples/quickstart.py                      # Fashion-MNIST from Debian's dataset-fashion-mnist
    python examples/quickstart.py --data my_images/    # any root/<class>/<image> folder (with test/ beside train/)
"""
from __future__ import annotations

import argparse
from pathlib import Path

from torch.utils.data import DataLoader

import synthaug
from synthaug import ExportConfig
from synthaug.report import below_reference, format_table
from synthaug.data.fashion_mnist import write_fashion_mnist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="labelled folder [default: Fashion-MNIST]")
    parser.add_argument("--work", type=Path, default=Path("quickstart"), help="where outputs go")
    parser.add_argument("--arch", default=synthaug.DEFAULT_ARCH)
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget")
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=1000, help="classifier steps per benchmark condition")
    parser.add_argument("--teacher-steps", type=int, default=None, help="[default: the budget follows the folder]")
    args = parser.parse_args()

    data = args.data
    if data is None:
        data = args.work / "fashion"
        if not data.exists():
            write_fashion_mnist(data)  # needs `apt-get install dataset-fashion-mnist`

    run = synthaug.fit(data, args.work / "run", arch=args.arch, minutes=args.minutes, resume=False)
    gen = synthaug.load_generator(run)
    print(f"generator: {gen.image_shape}, classes {gen.class_names}")

    # the advisor: the best classifier baseline for this folder, and whether the generator adds to it (validation
    # split of the training folder; test/ is never opened); the advice goes into the run
    advice = synthaug.tune(run, recipe=synthaug.ClassifierRecipe(steps=args.steps // 2),
                           teacher_steps=args.teacher_steps)
    print(f"tune: {advice['verdict']}")

    synth = synthaug.export(run, args.work / "synth.h5", ExportConfig(per_class=args.per_class, seed=0, overwrite=True))
    loader = DataLoader(synthaug.SyntheticDataset(synth), batch_size=256, shuffle=True, num_workers=2)
    images, labels = next(iter(loader))
    print(f"a synthetic batch: {tuple(images.shape)} in [{images.min():.2f}, {images.max():.2f}], "
          f"labels {labels[:8].tolist()}")

    # on the test folder: plain real, the advised baseline, and the generator's fresh images on top of it as advised
    report = synthaug.benchmark(data, None, run, recipe=synthaug.ClassifierRecipe(steps=args.steps), ratios=None,
                                mixes=None, out=args.work / "report")
    print(format_table(report))
    print(below_reference(report))


if __name__ == "__main__":
    main()
