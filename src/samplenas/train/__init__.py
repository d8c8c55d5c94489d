"""Stage-1 training: recipes, the sandwich-rule trainer, checkpoints, distributed runs."""

from samplenas.train.config import RunConfig, load_config
from samplenas.train.trainer import Trainer, TrainingDiverged

__all__ = ["RunConfig", "Trainer", "TrainingDiverged", "load_config"]
