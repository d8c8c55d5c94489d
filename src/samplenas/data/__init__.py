"""Datasets and splits: Fashion-MNIST (IDX files), scikit-learn digits, image folders
(decoded into memory, or streamed from disk with ``data.streaming``)."""

from samplenas.data.datasets import DataSplits, load_dataset
from samplenas.data.loader import BatchLoader, Loader, make_loader
from samplenas.data.stream import StreamingSplits

Splits = DataSplits | StreamingSplits  # what load_dataset returns

__all__ = [
    "BatchLoader",
    "DataSplits",
    "Loader",
    "Splits",
    "StreamingSplits",
    "load_dataset",
    "make_loader",
]
