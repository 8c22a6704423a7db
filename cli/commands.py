"""The commands, each a few lines over `synthaug`'s public API."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
from click.core import ParameterSource

import synthaug
from synthaug import distributed
from synthaug import exporting
from synthaug.engine import PRECISIONS
from synthaug.classify import (AUGMENT_BASELINES, AUGMENT_POLICIES, BATCH_MIXES, CLASSIFIER_LOSSES, IMBALANCE_BASELINES,
                              with_baseline)
from synthaug.config import fit_settings
from synthaug.sampler import resolve_sampling
from synthaug.sources import resolve_source
from synthaug.losses import list_losses
from synthaug.models import list_archs
from synthaug_cli.main import cli



@cli.group()
def datasets() -> None:
    """Write built-in data sets as labelled image folders."""


@datasets.command("fashion-mnist")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--source", type=click.Path(path_type=Path), default=None,
              help="Folder with the IDX files [default: /usr/share/datasets/fashion-mnist].")
@click.option("--limit", type=int, default=None, help="Keep only the first N images of each split.")
def fashion_mnist(out: Path, source: Path | None, limit: int | None) -> None:
    """Write Fashion-MNIST as OUT/train/<class>/*.png and OUT/test/<class>/*.png."""
    from synthaug.data.fashion_mnist import write_fashion_mnist

    write_fashion_mnist(out, source, limit)
    click.echo(f"wrote {out}/train and {out}/test")


@datasets.command("oxygen-icons")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--source", type=click.Path(path_type=Path), default=None,
              help="The theme's base folder [default: /usr/share/icons/oxygen/base].")
@click.option("--test-fraction", type=float, default=0.2, show_default=True, help="Share of icons held out.")
def oxygen_icons(out: Path, source: Path | None, test_fraction: float) -> None:
    """Write Debian's oxygen icons (RGBA PNGs, several sizes) as OUT/{train,test}/<context>/*.png."""
    from synthaug.data.icons import ICON_GROUPS, write_icons

    if not 0.0 < test_fraction < 1.0:
        raise click.UsageError(f"--test-fraction must lie strictly between 0 and 1 (got {test_fraction})")
    counts = write_icons(out, source, test_fraction)
    for split, per_class in counts.items():
        click.echo(f"{out}/{split}: {sum(per_class.values())} images, " +
                   ", ".join(f"{c} {n}" for c, n in sorted(per_class.items())))
    click.echo(f"each icon comes at several sizes: give tune and benchmark --group-by '{ICON_GROUPS}' so that "
               f"validation never scores an icon seen in training at another size")


@cli.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run folder [default: runs/<data name>].")
@click.option("--arch", type=click.Choice(list_archs()), default=None,
              help="[default: the default recipe for the folder and device, printed when fit starts]")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Epochs to train [default: the default recipe's budget, or 20 with --arch].")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop cleanly after this many minutes.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after this many generator steps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Images per step [default: the default recipe's, or 64].")
@click.option("--resolution", type=click.IntRange(min=8), default=None,
              help="Side length [default: the folder's own, capped by the default recipe].")
@click.option("--width", type=click.IntRange(min=1), default=None, help="Network width [default: the architecture's own].")
@click.option("--ema/--no-ema", default=None,
              help="Keep an EMA copy of the generator for sampling [default: the architecture's own].")
@click.option("--loss", type=click.Choice(list_losses()), default=None,
              help="[default: the architecture's own]")
@click.option("--lr-g", type=float, default=None)
@click.option("--lr-d", type=float, default=None)
@click.option("--augment", default=None, metavar="POLICY",
              help="DiffAugment on real and fake images, e.g. translation,cutout,color (for small data sets).")
@click.option("--mode-seeking", type=float, default=None, metavar="WEIGHT",
              help="Weight of the MSGAN mode-seeking term against conditional mode collapse (0: off) "
                   "[default: the architecture's own].")
@click.option("--lecam", type=click.FloatRange(min=0), default=None, metavar="WEIGHT",
              help="Weight of the LeCam regulariser of the discriminator, for limited data (0: off) [default: 0].")
@click.option("--class-balance/--no-class-balance", default=None,
              help="Draw training images with equal probability per class (for imbalanced folders) "
                   "[default: the default recipe decides: on for uneven folders].")
@click.option("--device", default=None, help="auto, cpu, cuda, cuda:N [default: auto].")
@click.option("--seed", type=int, default=None, help="[default: 0]")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def fit(data: Path, out: Path | None, arch: str | None, resume: bool, quiet: bool, resolution: int | None,
        width: int | None, ema: bool | None, **settings) -> None:
    """Train a class-conditional GAN on DATA (root/<class>/<image>, or a folder with train/)."""
    run = synthaug.fit(data, out, arch=arch, resolution=resolution, width=width, ema=ema, resume=resume,
                       progress=not quiet, **settings)
    if distributed.current().is_main:
        click.echo(f"run folder: {run}")
        click.echo(f"does it help your classifier? check with: synthaug tune {run} && "
                   f"synthaug benchmark --synthetic {run}")


def baseline_option(f):
    """--baseline, shared by benchmark and tune."""
    return click.option(
        "--baseline", default="auto", show_default=True, metavar="auto|off|NAME[ + LOSS]",
        help="The classifier baseline synthetic data is judged on top of: 'auto' chooses it on a validation split "
             "of the training folder (or takes tune's advice for the run); 'off' trains every condition with the "
             f"classifier flags as given; or one of {', '.join(AUGMENT_BASELINES)}, optionally ' + ' one of "
             f"{', '.join(IMBALANCE_BASELINES)}.")(f)


def group_by_option(f):
    """--group-by, shared by benchmark and tune."""
    return click.option(
        "--group-by", default=None, metavar="REGEX",
        help="Keep images whose file names (under their class folder) give the same match on one side of the "
             "validation split: the first parenthesised group, else the whole match; e.g. "
             r"'^\d+x\d+-(.+)$' for one icon drawn at several sizes.")(f)


def _baseline(value: str) -> str | None:
    """--baseline's value for the library: None for 'off'; an unknown name is a one-line usage error."""
    if value == "off":
        return None
    if value != "auto":
        try:
            with_baseline(synthaug.ClassifierRecipe(), value)
        except synthaug.SynthaugError as exc:
            raise click.UsageError(f"--baseline: {exc}") from None
    return value


def _sampling_overrides(truncation: float | None, latent_scale: float | None, min_confidence: float | None,
                        soft_labels: bool | None, snapshots: str | None, teacher_steps: int | None) -> dict:
    """The sampling flags a user set (None: not set, so the run's sampling.json or the default stands)."""
    return {"truncation": truncation, "latent_scale": latent_scale, "min_confidence": min_confidence,
            "soft_labels": soft_labels, "snapshots": tuple(snapshots.split(",")) if snapshots else None,
            "teacher_steps": teacher_steps}


def _source(value: Path | None) -> Path:
    """A run folder, generator file or pretrained name; default the latest run under ./runs."""
    if value is None:
        return synthaug.latest_run()
    if not value.exists() and str(value) in synthaug.list_pretrained():
        return synthaug.pretrained_path(str(value))
    return value


def _str(path: Path | None) -> str | None:
    """A path as the library's configs hold it (None stays None)."""
    return None if path is None else str(path)


def sampling_options(f):
    """The sampling flags shared by export and benchmark."""
    options = [
        click.option("--truncation", type=float, default=None,
                     help="Truncate the noise (normal or uniform) at this |z|: fewer odd images, less diversity."),
        click.option("--latent-scale", type=float, default=None, metavar="S",
                     help="Multiply the normal prior by S (>1 widens, <1 narrows) [default: sampling.json or 1]."),
        click.option("--min-confidence", type=float, default=None, metavar="P",
                     help="Keep only images the teacher gives their class with probability >= P."),
        click.option("--soft-labels/--hard-labels", default=None,
                     help="Store the teacher's class probabilities beside the labels (HDF5 format version 2)."),
        click.option("--snapshots", default=None, metavar="E1,E2,..",
                     help="Pool these generator snapshots of the run (names under RUN/generators/)."),
        click.option("--teacher-steps", type=int, default=None, metavar="N",
                     help="Training steps of the teacher (soft labels, filter; for --imbalance and --top-up the "
                          "top-up search's) [default: sampling.json, else 40 epochs of the real folder, 500 to "
                          "3,000 steps]."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@cli.command()
@click.option("--run", "--source", "run", type=click.Path(path_type=Path), default=None,
              help="Run folder or generator .pt [default: the latest under ./runs]. Under torchrun write --source "
                   "(torchrun reads --run as its own --run-path).")
@click.option("--pretrained", type=click.Choice(synthaug.list_pretrained()), default=None,
              help="Use a built-in pretrained generator instead of a run.")
@click.option("--per-class", type=click.IntRange(min=1), default=None, help="Images per class.")
@click.option("--balance-to", type=click.Path(path_type=Path), default=None,
              help="Instead of --per-class: top up this real folder's classes to its largest (or --target).")
@click.option("--target", type=click.IntRange(min=1), default=None, help="With --balance-to: the count every class should reach.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="OUT.h5 / OUT.hdf5, or a folder.")
@click.option("--format", "fmt", type=click.Choice(exporting.WRITERS.names()), default=None,
              help="[default: from --out]")
@click.option("--classes", default=None, help="Comma-separated class names [default: all].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="[default: the best for the device]")
@sampling_options
@click.option("--compression", type=click.Choice(["lzf", "gzip"]), default=None)
@click.option("--real", type=click.Path(path_type=Path), default=None,
              help="The real folder the teacher learns from [default: the run's training folder].")
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(list(PRECISIONS)), default="fp32", show_default=True,
              help="Run the generator under autocast at this precision (bf16/fp16: for GPUs).")
@click.option("--compile", is_flag=True, help="Run the generator through torch.compile (pays off for large exports).")
@click.option("--resume", is_flag=True, help="Continue an interrupted export with the same settings.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists (only once the new one is complete).")
@click.option("--quiet", is_flag=True)
def export(run: Path | None, pretrained: str | None, classes: str | None, quiet: bool, out: Path,
           truncation: float | None, latent_scale: float | None, min_confidence: float | None,
           soft_labels: bool | None, snapshots: str | None, teacher_steps: int | None, **options) -> None:
    """Generate a class-balanced synthetic data set from a trained generator."""
    if (options["per_class"] is None) == (options["balance_to"] is None):
        raise click.UsageError("give exactly one of --per-class N and --balance-to DIR")
    source = synthaug.pretrained_path(pretrained) if pretrained else _source(run)
    sampling = resolve_sampling(source, None, _sampling_overrides(
        truncation, latent_scale, min_confidence, soft_labels, snapshots, teacher_steps))
    config = synthaug.ExportConfig(classes=tuple(classes.split(",")) if classes else None, sampling=sampling,
                                   **{k: str(v) if isinstance(v, Path) else v for k, v in options.items()})
    stats: dict = {}
    written = synthaug.export(source, out, config, progress=not quiet, stats=stats)
    if not distributed.current().is_main:
        return
    click.echo(f"wrote {stats['images']} images to {written} ({stats['images_per_s']:.0f} images/s)")
    if "acceptance" in stats:
        rates = ", ".join(f"{name} {100 * r:.1f}%" for name, r in stats["acceptance"].items())
        click.echo(f"acceptance at min-confidence {sampling.min_confidence}: {rates}")


# Which protocol option each `benchmark` flag sets (None: it selects the protocol or sets nothing; a pair: either,
# whichever the protocol takes); a flag the chosen protocol does not take is an error, never silently dropped.
BENCHMARK_FLAGS = {
    "synthetic": "synthetic", "real": "real", "test": "test", "classifier": "recipe", "steps": "recipe",
    "classifier_augment": "recipe", "erasing": "recipe", "classifier_mix": "recipe", "classifier_loss": "recipe",
    "seed": "recipe", "seeds": "seeds", "device": "device", "out": "out", "ratios": "ratios", "mix_recipes": "mixes",
    "labels": "labels", "logreg": "logreg", "truncation": "sampling", "latent_scale": "sampling",
    "min_confidence": "sampling", "soft_labels": "sampling", "snapshots": "sampling",
    "teacher_steps": ("sampling", "teacher_steps"),
    "real_fraction": "fractions", "keep": "keep", "imbalance": "rare", "fit_minutes": "fit", "fit_steps": "fit",
    "augment": "fit", "fit_arch": "fit", "fit_ema": "fit", "fit_lecam": "fit", "class_balance": "fit", "work": "work",
    "baseline": "baseline", "group_by": "group_by", "held_out": "held_out", "translated": "translated",
    "headroom": None, "top_up": None, "quiet": None,
}


def _benchmark_protocol(real_fraction: str | None, headroom: bool, imbalance: str | None, top_up: bool) -> str:
    """The protocol the selecting flags name."""
    chosen = [flag for flag, on in (("--real-fraction", real_fraction), ("--imbalance", imbalance),
                                    ("--top-up", top_up)) if on]
    if len(chosen) > 1:
        raise click.UsageError(f"{' and '.join(chosen)} select different protocols; give one")
    if headroom and not real_fraction:
        raise click.UsageError("--headroom needs --real-fraction F1,F2,.. (each below 1: held-out images must remain)")
    if real_fraction:
        return "headroom" if headroom else "low-data"
    return "imbalance" if imbalance else ("top-up" if top_up else "compare")


def _numbers(flag: str, text: str) -> tuple[float, ...]:
    """A comma-separated list of numbers, or a one-line usage error."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.UsageError(f"{flag}: {text!r} is not a comma-separated list of numbers") from None


def _positive(flag: str, values: tuple[float, ...]) -> tuple[float, ...]:
    """Values that must all be positive, or a one-line usage error."""
    if any(v <= 0 for v in values):
        raise click.UsageError(f"{flag} must be positive (got {','.join(f'{v:g}' for v in values)})")
    return values


@cli.command()
@click.option("--synthetic", type=click.Path(path_type=Path), default=None,
              help="An HDF5 export, or a run / generator file / pretrained name: fresh images every epoch "
                   "(for --real-fraction: the export made from all of --real; for --top-up: the run to draw from).")
@click.option("--real", type=click.Path(path_type=Path), default=None,
              help="Real training folder [default: the folder the source's run was trained on].")
@click.option("--test", type=click.Path(path_type=Path), default=None,
              help="Real test folder [default: test/ beside --real].")
@click.option("--classifier", type=click.Choice(synthaug.list_classifiers()), default="cnn", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Training steps per classifier.")
@click.option("--classifier-augment", type=click.Choice(AUGMENT_POLICIES), default="shift", show_default=True,
              help="Augmentation of every condition's classifier, per image: a random shift, plus TrivialAugmentWide "
                   "or RandAugment (torchvision).")
@click.option("--erasing", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Probability of random erasing per image, for every condition's classifier.")
@click.option("--classifier-mix", type=click.Choice(BATCH_MIXES), default="none", show_default=True,
              help="MixUp or CutMix on every hard-label batch.")
@click.option("--classifier-loss", type=click.Choice(CLASSIFIER_LOSSES), default="ce", show_default=True,
              help="For uneven classes: class-weighted, logit-adjusted, class-balanced sampling, or CMO (rare-class "
                   "patches on common images).")
@click.option("--ratios", default="0.25,0.5,1,2", show_default=True,
              help="Synthetic-per-real ratios of the mixed sets ('none': real and synthetic only) [a run that "
                   "`tune` advised: its ratio].")
@click.option("--mix-recipe", "mix_recipes", default="concat", show_default=True, metavar="R1,R2,..",
              help="How real and synthetic images meet, each reported side by side at the same step budget: concat, "
                   "weighted:W (synthetic share of every batch), finetune[:F] (synthetic first, then real).")
@click.option("--labels", type=click.Choice(["auto", "hard", "soft"]), default="auto", show_default=True,
              help="Train synthetic conditions on hard labels, on the teacher's soft labels, or both when available.")
@sampling_options
@baseline_option
@group_by_option
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Repeat every condition with this many seeds.")
@click.option("--seed", type=int, default=0, show_default=True, help="First classifier seed.")
@click.option("--logreg/--no-logreg", default=True, show_default=True,
              help="Add logistic regression on pixels as a sanity anchor.")
@click.option("--real-fraction", default=None, metavar="F1,F2,..",
              help="Low-data protocol: fit a generator on each fraction of --real and compare (e.g. 0.01,0.1,1).")
@click.option("--headroom", is_flag=True,
              help="With --real-fraction: mix in held-out real images instead of synthetic ones (a perfect generator).")
@click.option("--imbalance", default=None, metavar="CLASS1,CLASS2,..",
              help="Imbalance protocol: these classes keep --keep of their images; compare weighting and top-up.")
@click.option("--keep", type=float, default=0.01, show_default=True, help="With --imbalance: fraction kept.")
@click.option("--top-up", is_flag=True,
              help="Top every class of --real up to its largest from the run --synthetic; compare rare-class recall "
                   "(rare: under half the largest class) with the folder as it is and a class-weighted loss.")
@click.option("--held-out", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="With --top-up: a folder of real images of the same classes (files already in --real are left "
                   "out), topping the rare classes up instead: the ceiling a perfect generator would reach.")
@click.option("--translated", is_flag=True,
              help="With --imbalance or --top-up: also top the rare classes up with images of larger classes "
                   "translated into them by a classifier's gradient (M2m; no generator involved).")
@click.option("--fit-minutes", type=float, default=None,
              help="With a fitting protocol: minutes for each generator it fits [default: 10].")
@click.option("--fit-steps", type=click.IntRange(min=1), default=None,
              help="With a fitting protocol: generator steps for each fit instead of --fit-minutes (the same work on "
                   "any machine).")
@click.option("--augment", default=None,
              help="With a fitting protocol: DiffAugment policy for its generators [default: translation,cutout].")
@click.option("--fit-arch", type=click.Choice(list_archs()), default=None,
              help="With a fitting protocol: architecture of its generators [default: the default recipe].")
@click.option("--fit-ema/--fit-no-ema", default=None,
              help="With a fitting protocol: keep an EMA generator [default: the architecture's own].")
@click.option("--fit-lecam", type=click.FloatRange(min=0), default=None, metavar="WEIGHT",
              help="With a fitting protocol: LeCam regularisation of its discriminators [default: 0, off].")
@click.option("--class-balance/--no-class-balance", default=None,
              help="With a fitting protocol: class-balanced sampling in its fits [default: on for --imbalance].")
@click.option("--work", type=click.Path(path_type=Path), default=None,
              help="With a fitting protocol or --top-up: where its folders, runs and exports go [default: OUT/work].")
@click.option("--device", default="auto", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Report folder [default: reports/<data name>-<time>].")
@click.option("--quiet", is_flag=True)
@click.pass_context
def benchmark(ctx: click.Context, **flags) -> None:
    """Train the same classifier on real, synthetic and mixed data; test each on held-out real data.

    The flags choose the protocol: the plain comparison, --real-fraction (low data; with --headroom held-out real
    images instead), --imbalance or --top-up. A flag the chosen protocol does not take is an error."""
    from synthaug.protocols import PROTOCOLS, protocol_fields, run_protocol

    f = flags
    name = _benchmark_protocol(f["real_fraction"], f["headroom"], f["imbalance"], f["top_up"])
    takes = set(protocol_fields(name))
    for param, field_name in BENCHMARK_FLAGS.items():
        fields = (field_name,) if isinstance(field_name, str) else field_name or ()
        if fields and not takes.intersection(fields) and \
                ctx.get_parameter_source(param) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            flag = next(p.opts[0] for p in ctx.command.params if p.name == param)
            raise click.UsageError(f"{flag} is not used by the {name} protocol")
    options = PROTOCOLS.get(name).options
    values = {"real": _str(f["real"]), "test": _str(f["test"]), "seeds": f["seeds"], "device": f["device"],
              "out": _str(f["out"]), "synthetic": _str(f["synthetic"]), "labels": f["labels"],
              "recipe": synthaug.ClassifierRecipe(arch=f["classifier"], steps=f["steps"], seed=f["seed"],
                                                  augment=f["classifier_augment"], erasing=f["erasing"],
                                                  mix=f["classifier_mix"], loss=f["classifier_loss"]),
              "ratios": () if f["ratios"] == "none" else _positive("--ratios", _numbers("--ratios", f["ratios"])),
              "mixes": tuple(f["mix_recipes"].split(",")), "logreg": f["logreg"], "keep": f["keep"],
              "work": _str(f["work"]), "rare": tuple(f["imbalance"].split(",")) if f["imbalance"] else None,
              "baseline": _baseline(f["baseline"]), "group_by": f["group_by"], "held_out": _str(f["held_out"]),
              "teacher_steps": f["teacher_steps"], "translated": f["translated"],
              "fractions": _numbers("--real-fraction", f["real_fraction"]) if f["real_fraction"] else None}
    if "fit" in takes:
        base = next(x for x in dataclasses.fields(options) if x.name == "fit").default
        values["fit"] = fit_settings(base, minutes=f["fit_minutes"], max_steps=f["fit_steps"], augment=f["augment"],
                                     arch=f["fit_arch"], ema=f["fit_ema"], class_balance=f["class_balance"],
                                     lecam=f["fit_lecam"])
        if f["fit_steps"] is not None and f["fit_minutes"] is None:
            values["fit"] = dataclasses.replace(values["fit"], minutes=None)  # the step budget alone ends the fit
    if "sampling" in takes:
        values["sampling"] = _benchmark_sampling(f)
    if name == "compare" and f["synthetic"] is not None and read_advice_of(f["synthetic"]):
        from synthaug.benchmarking import advised_use  # a tuned run: its advised ratio and mix recipe, unless set

        ratios, mixes = advised_use(resolve_source(f["synthetic"]), None, None)
        for param, key, advised in (("ratios", "ratios", ratios), ("mix_recipes", "mixes", mixes)):
            if ctx.get_parameter_source(param) == ParameterSource.DEFAULT:
                values[key] = advised
    request = options(**{k: v for k, v in values.items() if k in takes and v is not None})
    _, table, folder = run_protocol(name, request, progress=not f["quiet"])
    click.echo(table)
    click.echo(f"wrote {folder}")


def read_advice_of(source: Path) -> dict | None:
    """`tune`'s advice for a run source given on the command line."""
    from synthaug.benchmarking import advice_of

    return advice_of(resolve_source(source))


def _benchmark_sampling(f: dict) -> synthaug.SamplingConfig | None:
    """The sampling a generator source is benchmarked with: its sampling.json with the flags a user set on top
    (None: none set); on an export the flags are an error."""
    overrides = _sampling_overrides(f["truncation"], f["latent_scale"], f["min_confidence"], f["soft_labels"],
                                    f["snapshots"], f["teacher_steps"])
    if f["synthetic"] is None or all(v is None for v in overrides.values()):
        return None
    source = resolve_source(f["synthetic"])
    if source.kind != "generator":
        raise click.UsageError(f"{f['synthetic']}: the sampling flags apply to a generator, not to an export")
    return resolve_sampling(source.path, None, overrides)


@cli.command("archs")
def archs() -> None:
    """List the architectures `fit --arch` accepts."""
    from synthaug.models import get_arch

    for name in list_archs():
        click.echo(f"{name:12s} {get_arch(name).description}")


@cli.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
def inspect(path: Path) -> None:
    """Validate an HDF5 export and print what it holds."""
    info = synthaug.SyntheticDataset(path).info
    click.echo(json.dumps({"images": info.num_images, "image_shape": info.image_shape,
                           "class_names": info.class_names, "provenance": info.provenance}, indent=1))


@cli.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--real", type=click.Path(path_type=Path), required=True, help="Real labelled folder to compare with.")
@click.option("--per-class", type=int, default=1000, show_default=True, help="Images per class to generate.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write the metrics as JSON.")
@click.option("--device", default="auto", show_default=True)
@click.option("--inception-weights", type=click.Path(path_type=Path), default=None,
              help="Also the classic Inception FID, from this local copy of pytorch-fid's weights (never downloaded).")
@click.option("--quiet", is_flag=True)
def evaluate(source: Path, real: Path, per_class: int, seed: int, out: Path | None, device: str,
             inception_weights: Path | None, quiet: bool) -> None:
    """Quality of a run, generator file or HDF5 export (SOURCE) against real images."""
    from synthaug.metrics import evaluate as run_evaluate

    m = run_evaluate(_source(source), real, per_class=per_class, seed=seed, device=device, out=out,
                     inception_weights=inception_weights, progress=not quiet)
    for key in ("frechet_distance", "frechet_distance_per_class_mean", "label_agreement", "precision", "recall",
                "density", "coverage", "inception_fid"):
        if key in m:
            click.echo(f"{key:32s} {m[key]:.4f}")


@cli.command("select-best")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--from-epoch", type=int, default=1, show_default=True, help="Score only snapshots from this epoch on.")
@click.option("--quiet", is_flag=True)
def select_best(run: Path, from_epoch: int, quiet: bool) -> None:
    """Install the epoch snapshot with the lowest feature Fréchet distance as RUN/generator.pt."""
    from synthaug.metrics import select_best_epoch

    result = select_best_epoch(run, from_epoch=from_epoch, progress=not quiet)
    for name, s in result["scores"].items():
        click.echo(f"{name}  FD {s['frechet_distance']:8.3f}  agreement {100 * s['label_agreement']:.1f}%"
                   + ("  <- best" if name == result["best"] else ""))


@cli.command()
@click.argument("run", type=click.Path(path_type=Path), required=False)
@click.option("--real", type=click.Path(path_type=Path), default=None,
              help="Training folder to split [default: the run's]. Its test/ sibling is never opened.")
@click.option("--holdout", type=float, default=0.1, show_default=True, help="Validation share of each class.")
@click.option("--steps", type=int, default=400, show_default=True, help="Steps of each trial's classifier.")
@click.option("--teacher-steps", type=int, default=None,
              help="Steps of the teacher [default: its budget follows the folder; the better of half of it and all of it].")
@baseline_option
@group_by_option
@click.option("--full-search", is_flag=True,
              help="Search the sampling even where synthetic data at default sampling is clearly below the baseline.")
@click.option("--device", default="auto", show_default=True)
@click.option("--quiet", is_flag=True)
def tune(run: Path | None, real: Path | None, holdout: float, steps: int, teacher_steps: int | None, baseline: str,
         group_by: str | None, full_search: bool, device: str, quiet: bool) -> None:
    """Advise the best whole recipe for RUN's folder (classifier baseline, then whether and how to add RUN's
    images) by validation accuracy; write it into RUN/sampling.json, where export and benchmark find it."""
    from synthaug.tuning import TUNE_RECIPE, format_trials

    if not 0.0 < holdout < 1.0:
        raise click.UsageError(f"--holdout must lie strictly between 0 and 1 (got {holdout})")
    if steps < 1 or (teacher_steps is not None and teacher_steps < 1):
        raise click.UsageError("--steps and --teacher-steps must be at least 1")
    recipe = dataclasses.replace(TUNE_RECIPE, steps=steps)
    result = synthaug.tune(_source(run), real=real, holdout=holdout, recipe=recipe, teacher_steps=teacher_steps,
                           device=device, progress=not quiet, baseline=_baseline(baseline),
                           sampling_search="full" if full_search else "auto", group_by=group_by)
    click.echo(format_trials(result))
    click.echo(f"chosen sampling: {json.dumps(result['sampling'], sort_keys=True)}")
    click.echo(f"tune took {result['seconds']:.0f} s")
    click.echo(result["verdict"])
    click.echo(f"wrote {result['written']}")
