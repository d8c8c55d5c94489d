"""Predictors by name, for the CLI and the benchmarks, and back from their files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from samplenas.errors import UserError
from samplenas.io import DAMAGED_FILE_ERRORS
from samplenas.predictors.base import FORMAT, Predictor
from samplenas.space import SearchSpace, load_space

NAMES = ("gcn", "gcn-two-stage", "rf", "mlp")


def make_predictor(name: str, space: SearchSpace, seed: int = 0) -> Predictor:
    from samplenas.predictors.forest import RandomForestPredictor
    from samplenas.predictors.gcn import GCNPredictor, TwoStagePredictor
    from samplenas.predictors.mlp import MLPPredictor

    factories = {
        "gcn": GCNPredictor,
        "gcn-two-stage": TwoStagePredictor,
        "rf": RandomForestPredictor,
        "mlp": MLPPredictor,
    }
    if name not in factories:
        raise UserError(f"unknown predictor '{name}'; choose from {list(NAMES)}")
    return factories[name](space, seed=seed)


def predictor_kinds() -> dict[str, type[Predictor]]:
    """Every predictor class that can be saved, by the kind its files name."""
    from samplenas.predictors.forest import RandomForestPredictor
    from samplenas.predictors.gcn import GCNPredictor
    from samplenas.predictors.mlp import MLPPredictor

    return {cls.name: cls for cls in (RandomForestPredictor, GCNPredictor, MLPPredictor)}


def load_predictor(path: str | Path, space: SearchSpace | None = None) -> Predictor:
    """Any predictor written by ``Predictor.save``, checked before use (no unpickling).

    A missing, truncated, tampered or foreign file is a UserError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"predictor file '{path}' does not exist; fit one with 'samplenas predictor fit'"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            arrays = {k: z[k] for k in z.files if k != "header"}
        kinds = predictor_kinds()
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError(f"the header is not {FORMAT}")
        if header.get("kind") not in kinds:
            raise ValueError(f"unknown predictor kind {header.get('kind')!r}")
        for name, a in arrays.items():
            if a.dtype.kind not in "biuf" or (a.dtype.kind == "f" and not np.isfinite(a).all()):
                raise ValueError(f"array '{name}' is not finite numbers")
        cls = kinds[header["kind"]]
        if space is None:
            space = load_space(header["space"])
        elif space.name != header["space"]:
            raise UserError(
                f"predictor '{path}' is for space '{header['space']}', not '{space.name}'"
            )
        predictor = cls(space, **dict(header["hyperparameters"]))
        predictor.load_arrays(arrays)
    except (*DAMAGED_FILE_ERRORS, TypeError, RuntimeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"'{path}' is not a valid predictor file saved by samplenas ({exc}); "
            "fit it again with 'samplenas predictor fit'"
        ) from exc
    return predictor
