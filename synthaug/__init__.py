"""synthaug: fit class-conditional GANs on labelled image folders, export balanced synthetic data, benchmark it."""
from __future__ import annotations

__version__ = "0.1.0"
