"""Datasets and splits: Fashion-MNIST (IDX files), scikit-learn digits, image folders."""

from samplenas.data.datasets import DataSplits, load_dataset
from samplenas.data.loader import BatchLoader

__all__ = ["BatchLoader", "DataSplits", "load_dataset"]
