"""synthaug: fit class-conditional GANs on labelled image folders, export balanced synthetic data, benchmark it."""
from __future__ import annotations

from synthaug._version import __version__
from synthaug import protocols
from synthaug.benchmarking import benchmark
from synthaug.classify import ClassifierRecipe, list_classifiers
from synthaug.config import ExportConfig, FitSettings, SamplingConfig
from synthaug.data.dataset import SyntheticDataset, mix
from synthaug.data.folder import load_image_folder
from synthaug.errors import SynthaugError
from synthaug.exporting import export
from synthaug.fresh import FreshSyntheticDataset, GeneratedDataset
from synthaug.engine import generate
from synthaug.metrics import evaluate, select_best_epoch
from synthaug.models import DEFAULT_ARCH
from synthaug.pretrained import list_pretrained, pretrained_path
from synthaug.runs import latest_run, load_generator
from synthaug.train import fit
from synthaug.tuning import tune

__all__ = ["DEFAULT_ARCH", "ClassifierRecipe", "ExportConfig", "FitSettings", "FreshSyntheticDataset", "GeneratedDataset",
           "SamplingConfig", "SynthaugError", "SyntheticDataset", "__version__", "benchmark", "evaluate", "export",
           "fit", "generate", "latest_run", "list_classifiers", "list_pretrained", "load_generator",
           "load_image_folder", "mix", "pretrained_path", "protocols", "select_best_epoch", "tune"]
