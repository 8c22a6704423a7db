"""synthaug: fit class-conditional GANs on labelled image folders, export balanced synthetic data, benchmark it."""
from __future__ import annotations

__version__ = "0.1.0"

from synthaug import protocols
from synthaug.benchmark import benchmark
from synthaug.checkpoint import latest_run
from synthaug.classify import ClassifierRecipe, list_classifiers
from synthaug.data.dataset import GeneratedDataset, SyntheticDataset, mix
from synthaug.data.folder import load_image_folder
from synthaug.errors import SynthaugError
from synthaug.export import export
from synthaug.generate import generate, load_generator
from synthaug.metrics import evaluate, select_best_epoch
from synthaug.models import DEFAULT_ARCH
from synthaug.pretrained import list_pretrained, pretrained_path
from synthaug.train import fit

__all__ = ["DEFAULT_ARCH", "ClassifierRecipe", "GeneratedDataset", "SynthaugError", "SyntheticDataset", "benchmark",
           "evaluate", "export", "fit", "generate", "latest_run", "list_classifiers", "list_pretrained",
           "load_generator", "load_image_folder", "mix", "pretrained_path", "protocols", "select_best_epoch"]
