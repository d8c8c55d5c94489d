"""The training recipe: YAML in, typed dataclasses out, every bad key or value named.

Recipes ship inside the package (``samplenas/recipes/*.yaml``, read through
``importlib.resources`` so they work from an installed wheel) and are named by file stem:
``--config fashion``; a path to a YAML file works too. No recipe at all means ``fashion``.
The dataclass defaults below only fill keys a recipe leaves out; they are not a recipe of
their own. ``--set train.lr=0.2`` overrides one value. The resolved recipe is written
into the run directory so a run can be resumed and reproduced.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from samplenas.errors import UserError
from samplenas.io import atomic_write_text
from samplenas.yamlio import check_finite, parse_value, parse_yaml

RESUMES = "resumes"  # config.yaml's history of resumes; not part of the recipe
# what a resume may change: how long and how often, never what is trained on what
RESUMABLE = (
    "train.epochs",
    "checkpoint.every_steps",
    "checkpoint.keep_last",
    "eval_every_epochs",
    "train.threads",
    "data.data_dir",  # where the files are, not which
    "data.workers",  # how many processes decode streamed images, not which
)

RECIPES = importlib.resources.files("samplenas") / "recipes"
DEFAULT_RECIPE = "fashion"  # what ``train`` runs without --config


@dataclass
class DataConfig:
    dataset: str = "fashion-mnist"  # fashion-mnist | digits | folder
    data_dir: str | None = None
    val_size: int = 5000
    split_seed: int = 0  # the train/val split's own seed: a study's seeds vary training only
    image_size: int = 32  # folder datasets only
    grayscale: bool = False  # folder datasets only
    streaming: bool = False  # folder only: decode per batch in workers, not all into RAM
    workers: int = 4  # streaming only: DataLoader worker processes per rank
    augment: bool = True
    train_subset: int | None = None  # train on the first N training images (quick runs)


@dataclass
class OptimConfig:
    epochs: int = 10
    batch_size: int = 128  # per process
    lr: float = 0.1  # for a total batch of lr_reference_batch; scaled linearly
    lr_reference_batch: int = 256
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5.0e-5  # conv/linear weights; the largest covers them all
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.0
    label_smoothing: float = 0.1
    dropout: float = 0.2  # largest sub-network only
    drop_path: float = 0.2  # largest sub-network only
    grad_clip: float = 1.0  # 0 disables
    grad_clip_mode: str = "norm"  # "norm": global L2 norm; "value": each element (official code)
    num_random: int = 2  # sub-networks per step between the largest and the smallest
    distill: bool = True  # in-place distillation from the largest
    distill_warmup_epochs: float = 0.0  # ramp the teacher in from labels; 0: teacher at once
    channels_last: bool = True
    threads: int = 0  # torch threads per process; 0 = all cores / processes
    ema_decay: float = 0.0  # 0 = off; else eval/search/export use the weights' moving average


@dataclass
class SamplerConfig:
    name: str = "uniform"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class CalibrationConfig:
    batches: int = 20
    batch_size: int = 256
    # images used to re-estimate BN statistics: unaugmented training images, as the
    # papers' code does; "val" would calibrate on the images sub-networks are scored on
    split: str = "train"


@dataclass
class CheckpointConfig:
    every_steps: int = 200
    keep_last: int = 1


@dataclass
class FPNASConfig:
    """``samplenas fpnas`` (appendix Algorithm 1); plain ``train`` ignores this section."""

    sampling: str = "as:0.25"  # as:LAMBDA (K = max(1, round(LAMBDA * H))) or fs:K
    distribution: str = "joint"  # factorized | joint | mixed:THETA (joint after epoch THETA)
    supernet_warmup_epochs: int = 0  # epochs training omega with alpha fixed at uniform
    alpha_lr: float = 0.016  # Adam, constant
    beta: float = 0.3  # weight of the hinge cost in m^alpha
    temperature: float = 1.0  # m^omega = softmax(val log-likelihood / temperature); 1: paper's
    target_mflops: float | None = None  # hinge target TAR of the FLOPs cost; None: no cost
    target_params_m: float | None = None  # hinge target on parameters (millions); None: none
    latency_table: str | None = None  # a 'samplenas latency build' table: hinge on its ms
    target_latency_ms: float | None = None  # hinge target on the table's latency; needs it
    val_batch_size: int = 0  # validation images a rank scores per step; 0: train.batch_size
    # sampling: vae (Algorithm 3 of VAENAS): n_vae, n_s, score_calib_batches,
    # score_val_images and the VAE's own options (latent, n_iters, ranking_ratio, ...)
    vae: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    space: str | dict[str, Any] = "attentive-fashion"  # a name, a file, or a run's copy of one
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval_every_epochs: int = 1
    fpnas: FPNASConfig = field(default_factory=FPNASConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``typ`` (ints accepted for floats)."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(typ)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except UserError:
                pass
        raise UserError(f"config key '{key}' has the wrong type: {value!r}")
    if origin is dict or typ is dict:
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise UserError(f"config key '{key}' is {value}; use a finite number")
        return float(value)
    if typ is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if typ in (str, bool) and isinstance(value, typ):
        return value
    raise UserError(
        f"config key '{key}' must be of type {getattr(typ, '__name__', typ)}, got {value!r}"
    )


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise UserError(f"config section '{prefix or 'top level'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else key
            raise UserError(f"unknown config key '{where}'; known keys here: {sorted(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            continue
        key = f"{prefix}.{f.name}" if prefix else f.name
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            kwargs[f.name] = _build(typ, raw[f.name] or {}, key)
        else:
            kwargs[f.name] = _coerce(raw[f.name], typ, key)
    return cls(**kwargs)


def _check(cfg: RunConfig) -> RunConfig:
    t = cfg.train
    rules = [
        (t.epochs >= 1, "train.epochs", "at least 1"),
        (t.batch_size >= 2, "train.batch_size", "at least 2"),
        (t.lr > 0, "train.lr", "positive"),
        (0 <= t.momentum < 1, "train.momentum", "in [0, 1)"),
        (t.weight_decay >= 0, "train.weight_decay", "non-negative"),
        (0 <= t.dropout < 1, "train.dropout", "in [0, 1)"),
        (0 <= t.drop_path < 1, "train.drop_path", "in [0, 1)"),
        (0 <= t.label_smoothing < 1, "train.label_smoothing", "in [0, 1)"),
        (t.num_random >= 0, "train.num_random", "non-negative"),
        (t.warmup_epochs >= 0, "train.warmup_epochs", "non-negative"),
        (t.distill_warmup_epochs >= 0, "train.distill_warmup_epochs", "non-negative"),
        (t.grad_clip >= 0, "train.grad_clip", "non-negative"),
        (t.grad_clip_mode in ("norm", "value"), "train.grad_clip_mode", "norm or value"),
        (0 <= t.ema_decay < 1, "train.ema_decay", "in [0, 1) (0 turns the average off)"),
        (cfg.calibration.batches >= 1, "calibration.batches", "at least 1"),
        (cfg.calibration.split in ("train", "val"), "calibration.split", "train or val"),
        (cfg.data.workers >= 0, "data.workers", "non-negative"),
        (
            not cfg.data.streaming or cfg.data.dataset == "folder",
            "data.streaming",
            "false unless data.dataset is folder (only image folders stream)",
        ),
        (cfg.checkpoint.every_steps >= 1, "checkpoint.every_steps", "at least 1"),
        (cfg.data.val_size >= 1, "data.val_size", "at least 1"),
        (cfg.eval_every_epochs >= 0, "eval_every_epochs", "non-negative"),
        *_fpnas_rules(cfg.fpnas),
    ]
    for ok, key, what in rules:
        if not ok:
            raise UserError(f"config key '{key}' must be {what}")
    return cfg


def _fpnas_rules(f: FPNASConfig) -> list[tuple[bool, str, str]]:
    positive_or_none = "positive (or null for no target)"
    return [
        (f.supernet_warmup_epochs >= 0, "fpnas.supernet_warmup_epochs", "non-negative"),
        (f.alpha_lr > 0, "fpnas.alpha_lr", "positive"),
        (f.beta >= 0, "fpnas.beta", "non-negative"),
        (f.temperature > 0, "fpnas.temperature", "positive"),
        (f.target_mflops is None or f.target_mflops > 0, "fpnas.target_mflops", positive_or_none),
        (
            f.target_params_m is None or f.target_params_m > 0,
            "fpnas.target_params_m",
            positive_or_none,
        ),
        (
            f.target_latency_ms is None or f.target_latency_ms > 0,
            "fpnas.target_latency_ms",
            positive_or_none,
        ),
        (
            (f.target_latency_ms is None) == (f.latency_table is None),
            "fpnas.target_latency_ms",
            "given together with fpnas.latency_table (a hinge on latency needs both)",
        ),
        (f.val_batch_size >= 0, "fpnas.val_batch_size", "non-negative (0: train.batch_size)"),
    ]


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["train.lr=0.2", "sampler.name=uniform"]`` -> nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UserError(f"--set expects key=value, got '{pair}'")
        key, text = pair.split("=", 1)
        value = parse_value(text) if text else ""
        check_finite(value, "--set", f"{key.strip()}.")
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def recipe_names() -> list[str]:
    """The recipes shipped with samplenas, by the name ``--config`` accepts."""
    return sorted(p.name[: -len(".yaml")] for p in RECIPES.iterdir() if p.name.endswith(".yaml"))


def _parse_yaml(text: str, source: str | Path) -> dict[str, Any]:
    raw = parse_yaml(text, source) or {}
    if not isinstance(raw, dict):
        raise UserError(f"config file '{source}' must hold a YAML mapping")
    return raw


def _read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file (a run's ``config.yaml``) as a mapping; unreadable or malformed: exit 2."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UserError(f"cannot read config file '{path}': {exc.strerror or exc}") from exc
    return _parse_yaml(text, path)


def _read_recipe(source: str | Path) -> str:
    """The YAML text of a shipped recipe (a name given as a string) or of a file."""
    if isinstance(source, str) and source in recipe_names():
        return (RECIPES / f"{source}.yaml").read_text()
    try:
        return Path(source).read_text()
    except OSError as exc:
        names = ", ".join(recipe_names())
        raise UserError(
            f"cannot read config file '{source}': {exc.strerror or exc}; --config takes a YAML "
            f"file or the name of a shipped recipe ({names})"
        ) from exc


def load_config(
    source: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """Read a recipe (a shipped name or a path; ``fashion`` when None), apply overrides."""
    source = DEFAULT_RECIPE if source is None else source
    raw = _parse_yaml(_read_recipe(source), source)
    raw.pop(RESUMES, None)
    return _check(_build(RunConfig, merge(raw, overrides or {}), ""))


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    raw = {k: v for k, v in raw.items() if k != RESUMES}
    return _check(_build(RunConfig, raw, ""))


def _run_recipe(run_dir: Path) -> dict[str, Any]:
    """A run directory's saved recipe, read as it was trained.

    A ``config.yaml`` without ``data.split_seed`` predates three changes of meaning, undone
    here: it split by ``seed``; its ``flops-uniform`` drew targets from the prior (now
    ``flops-prior``); its ``-loss`` samplers scored candidates by label CE (``loss: ce``).
    """
    raw = _read_yaml(run_dir / "config.yaml")
    raw.pop(RESUMES, None)
    data = raw.get("data")
    if isinstance(data, dict) and "split_seed" not in data:
        raw["data"] = {**data, "split_seed": raw.get("seed", 0)}
        sampler = raw.get("sampler")
        if isinstance(sampler, dict):
            raw["sampler"] = _legacy_sampler(sampler)
    return raw


def _legacy_sampler(sampler: dict[str, Any]) -> dict[str, Any]:
    name, options = sampler.get("name"), dict(sampler.get("options") or {})
    if name == "flops-uniform":
        name = "flops-prior"
    if isinstance(name, str) and name.endswith("-loss"):
        options.setdefault("loss", "ce")
    return {**sampler, "name": name, "options": options}


def load_run_config(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """The recipe a run directory was trained with, plus ``overrides``."""
    return _check(_build(RunConfig, merge(_run_recipe(Path(run_dir)), overrides or {}), ""))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        out.update(flatten(v, f"{key}.") if isinstance(v, dict) else {key: v})
    return out


def resume_changes(run_dir: str | Path, cfg: RunConfig) -> dict[str, list[Any]]:
    """What ``cfg`` changes in the run saved in ``run_dir``: ``{key: [old, new]}``.

    A key outside ``RESUMABLE`` (seed, space, data split, sampler, batch size, ...) would
    make the resumed run something it was not; that is a user error naming the key.
    """
    old = flatten(load_run_config(run_dir).to_dict())
    new = flatten(cfg.to_dict())
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    changed = {k: [old.get(k), new.get(k)] for k in keys}
    fixed = [f"{k} ({a!r} -> {b!r})" for k, (a, b) in changed.items() if k not in RESUMABLE]
    if fixed:
        raise UserError(
            f"{', '.join(fixed)} cannot change on resume of '{run_dir}' (it defines the run); "
            f"a resume may change only {', '.join(RESUMABLE)}; start a new run with --out"
        )
    return changed


def record_resume(
    run_dir: str | Path, cfg: RunConfig, changed: dict[str, list[Any]], step: int
) -> None:
    """Write ``cfg`` to the run's config.yaml with this resume added to its ``resumes``."""
    path = Path(run_dir) / "config.yaml"
    history = _read_yaml(path).get(RESUMES)
    history = history if isinstance(history, list) else []
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    history.append({"when": when, "from_step": step, "changed": changed})
    atomic_write_text(path, yaml.safe_dump({**cfg.to_dict(), RESUMES: history}, sort_keys=False))
