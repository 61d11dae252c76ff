"""Scoring a backbone's feature cache (tlbench.training.feature_cache): the feature scores
on its train split and, where the backbone was pretrained by a run, the source scores
from that run's classifier (:func:`score_cache`); which (dataset, backbone) pairs a
study scores (:func:`scored_pairs`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlbench.analysis.transferability.logme import NoConvergence, logme
from tlbench.analysis.transferability.scores import (
    FEATURE_SCORES,
    KNN_K,
    SOURCE_SCORES,
    DegenerateScore,
    hscore,
    knn_accuracy,
    label_array,
    leep,
    nce,
    probability_array,
)
from tlbench.core.errors import InputShapeError
from tlbench.core.hashing import sha256_file
from tlbench.datasets import load_prepared
from tlbench.datasets.budget import ALL as BUDGET_ALL
from tlbench.datasets.budget import from_label as budget_value
from tlbench.models.weights import random_label, random_seed

#: The feature cache key's weight identities (tlbench.training.feature_cache.weights_identity) -> labels
#: (``{random: SEED}``: :func:`tlbench.models.weights.random_label`, e.g. ``random(seed 0)``).
WEIGHTS_LABELS = {
    "run_model_sha256": "pretraining run",
    "file_sha256": "weights file",
    "preset": "keras-hub preset",
}


# --------------------------------------------------------------------------- a feature cache


def score_features(
    train: np.ndarray,
    train_labels: np.ndarray,
    val: np.ndarray,
    val_labels: np.ndarray,
    k: int = KNN_K,
) -> dict[str, Any]:
    """Every score of :data:`FEATURE_SCORES` from train/val features, with each one's
    seconds and the train features' root-mean-square entry (``feature_rms``); a :class:`DegenerateScore` or a LogME that did not converge
    (:class:`tlbench.analysis.transferability.logme.NoConvergence`) is recorded as NaN
    with its reason in ``note``: one undefined score never fails the scores job."""
    import scipy.optimize  # noqa: F401  (imported before the clock starts:
    import sklearn.covariance  # noqa: F401
    import sklearn.neighbors  # noqa: F401  the seconds are the scores' own)

    record: dict[str, Any] = {}
    jobs = {
        "logme": lambda: logme(train, train_labels),
        "hscore": lambda: hscore(train, train_labels),
        "hscore_shrunk": lambda: hscore(train, train_labels, shrinkage=True),
        "knn_accuracy": lambda: knn_accuracy(train, train_labels, val, val_labels, k),
    }
    notes = []
    for name in FEATURE_SCORES:
        start = time.perf_counter()
        try:
            record[name] = jobs[name]()
        except (DegenerateScore, NoConvergence) as error:
            record[name] = math.nan
            notes.append(str(error))
        record[f"{name}_seconds"] = time.perf_counter() - start
    record["knn_k"] = k
    # the features' magnitude (every score here is scale-free; a head trained on the raw
    # features is not: a deep random-init backbone's are about 1e-11 to 1e-17)
    record["feature_rms"] = float(np.sqrt(np.mean(np.square(np.asarray(train, np.float64)))))
    record["note"] = "; ".join(notes)
    return record


def score_source_outputs(source_probs: Any, train_labels: Any) -> dict[str, Any]:
    """Every score of :data:`SOURCE_SCORES` from a source classifier's probabilities on
    the train images (NCE on their argmax source labels), with each one's seconds."""
    y = label_array(train_labels, len(np.asarray(train_labels)), "train_labels")
    probs = probability_array(source_probs, len(y))
    jobs = {
        "nce": lambda: nce(probs.argmax(axis=1), y),
        "leep": lambda: leep(probs, y),
    }
    record: dict[str, Any] = {}
    for name in SOURCE_SCORES:
        start = time.perf_counter()
        record[name] = jobs[name]()
        record[f"{name}_seconds"] = time.perf_counter() - start
    return record


def source_probabilities(
    run_dir: str | os.PathLike, backbone: Mapping[str, Any], images: np.ndarray, batch_size: int
) -> np.ndarray:
    """Source-class probabilities (N x Z) of a pretraining run's classifier
    (``run_dir/model.keras``) on ``images`` (uint8 N x H x W x 3), computed as the
    ``direct`` strategy computes them (:func:`tlbench.models.backbones.applications.build_source_classifier`,
    :func:`tlbench.models.inputs.predict`). ``backbone``: its ``name`` and ``kwargs``.
    Images of another height and width are resized to the model's input size first
    (as the ``direct`` strategy's are); another number of channels raises
    :class:`tlbench.core.errors.InputShapeError`."""
    # deferred: imports Keras; the workflow's parse-time check imports this module (scored_pairs)
    from tlbench.models.backbones.applications import build_source_classifier
    from tlbench.models.inputs import predict

    cfg = {
        "name": backbone["name"],
        "kwargs": dict(backbone.get("kwargs") or {}),
        "weights": {"run": str(run_dir)},
    }
    model, _ = build_source_classifier(cfg, tuple(int(s) for s in images.shape[1:]))
    return predict(model, images, batch_size)


#: Why a backbone's weights have no source classifier, by the record's ``weights`` label.
NO_SOURCE_CLASSIFIER = {
    "imagenet": "the project's ImageNet weights are the backbone without its classifier "
    "(include_top=False files)",
    "weights file": "a weights file holds the backbone only",
    "keras-hub preset": "a keras-hub preset's backbone is loaded without its classifier",
}


def _undefined_source_scores(reason: str) -> dict[str, Any]:
    """NaN NCE and LEEP (and seconds), with ``reason`` as the note."""
    record: dict[str, Any] = {"source_predict_seconds": math.nan}
    for name in SOURCE_SCORES:
        record[name] = math.nan
        record[f"{name}_seconds"] = math.nan
    record["note"] = f"{', '.join(SOURCE_SCORES)}: {reason}"
    return record


def _source_scores(
    cache: Path,
    backbone: Mapping[str, Any],
    label: str,
    source_run: str | os.PathLike | None,
    train: tuple[np.ndarray, np.ndarray],
    batch_size: int,
) -> dict[str, Any]:
    """NCE and LEEP of one feature cache's backbone (see :func:`score_cache`)."""
    weights = backbone["weights"]
    if not (isinstance(weights, Mapping) and "run_model_sha256" in weights):
        if source_run is not None:
            raise ValueError(
                f"source_run: {source_run} was given, but the backbone of the feature cache "
                f"{cache} has {label!r} weights, not a pretraining run's"
            )
        why = NO_SOURCE_CLASSIFIER.get(label, f"{label!r} weights carry no source classifier")
        return _undefined_source_scores(f"no source classifier: {why}")
    if source_run is None:
        raise ValueError(
            f"the backbone of the feature cache {cache} was pretrained by a run "
            "(run_model_sha256 in its key.json): NCE and LEEP need that run's folder "
            "(source_run)"
        )
    model_file = Path(source_run) / "model.keras"
    if not model_file.is_file():
        raise FileNotFoundError(f"source_run: {model_file} does not exist (not a finished run?)")
    digest = sha256_file(model_file)
    if digest != weights["run_model_sha256"]:
        raise ValueError(
            f"source_run: {model_file} (sha256 {digest}) is not the model the feature "
            f"cache {cache} was computed from (run_model_sha256 {weights['run_model_sha256']})"
        )
    x, y = train
    start = time.perf_counter()
    try:
        probs = source_probabilities(source_run, backbone, x, batch_size)
    except InputShapeError as error:
        return _undefined_source_scores(
            f"the source classifier in {source_run} takes images of shape {error.takes}, "
            f"the target's prepared images are {error.given} (another number of channels)"
        )
    record: dict[str, Any] = {"source_predict_seconds": time.perf_counter() - start}
    record.update(score_source_outputs(probs, y))
    record["note"] = ""
    return record


def score_cache(
    features_dir: str | os.PathLike,
    prepared_dir: str | os.PathLike,
    names: Mapping[str, Any],
    source_run: str | os.PathLike | None = None,
    *,
    batch_size: int = 32,
    budget: str = BUDGET_ALL,
    seeds: Sequence[int] = (0,),
) -> dict[str, Any]:
    """Scores of one feature cache folder (``tlbench.training.feature_cache``) with the prepared
    dataset's train/val labels; ``names`` (dataset, backbone) identify the row.

    NCE and LEEP: when the cache's backbone was pretrained by a run (its key's
    ``run_model_sha256``), ``source_run`` is that run's folder (an error otherwise,
    and also when its ``model.keras`` is not the one the features came from); its
    classifier predicts the TRAIN images (``batch_size`` a batch; the time in
    ``source_predict_seconds``). For other weights they are NaN and ``note`` says
    why. The test split is never read.

    ``budget`` (a label budget's label, tlbench.datasets.budget: ``all``, ``n5``, ...):
    the scores are computed on that budget's training images only (the rows of the
    train features and images a run of that budget trains on,
    :func:`tlbench.models.inputs.apply_budget`); k-NN is still scored on all of val.
    A run's subset is drawn with its seed, so with a budget each of ``seeds`` (the
    seeds of the budget's runs) is scored on its own subset and the record holds the
    mean of each score over them (``budget_seeds``; each seed's figures in
    ``per_seed``).
    """

    folder = Path(features_dir)
    key_file = folder / "key.json"
    if not key_file.is_file():
        raise FileNotFoundError(f"{folder} is not a feature cache (no key.json)")
    fields = json.loads(key_file.read_text())["fields"]
    # deferred: imports Keras; the workflow's parse-time check imports this module. The
    # runs' own subset (apply_budget), so the scores see the images a budget's runs train on
    from tlbench.models.inputs import apply_budget

    whole = load_prepared(prepared_dir, splits=("train", "val"))  # test: never read
    feats = {s: np.load(folder / f"{s}.npy") for s in ("train", "val")}
    for split in feats:
        rows = len(whole.split(split)[1])
        if len(feats[split]) != rows:
            raise ValueError(
                f"{folder}/{split}.npy has {len(feats[split])} rows, {prepared_dir}'s "
                f"{split} split {rows} labels: the cache is of another dataset"
            )
    if budget == BUDGET_ALL:
        return _score_subset(folder, fields, names, whole, feats, source_run, batch_size, budget)
    if not seeds:
        raise ValueError(f"score_cache: budget {budget!r} needs the seeds of its runs")
    records = []
    for seed in seeds:  # each seed's runs train on their own draw of images
        data, _ = apply_budget(whole, budget_value(budget), int(seed))
        train = {**feats, "train": feats["train"][data.train_indices]}
        records.append(
            _score_subset(folder, fields, names, data, train, source_run, batch_size, budget)
        )
    return _mean_over_seeds(records, [int(seed) for seed in seeds])


def _score_subset(
    folder: Path,
    fields: Mapping[str, Any],
    names: Mapping[str, Any],
    data: Any,
    feats: Mapping[str, np.ndarray],
    source_run: str | os.PathLike | None,
    batch_size: int,
    budget: str,
) -> dict[str, Any]:
    """The score record of one set of training images (``data``, ``feats``)."""
    labels = {s: data.split(s)[1] for s in ("train", "val")}
    backbone = fields["backbone"]
    weights = backbone["weights"]
    record = {
        "dataset": names["dataset"],
        "backbone": names["backbone"],
        "backbone_arch": backbone["name"],
        "budget": budget,
        "weights": weights_label(weights),
        "input_size": int(fields["input_size"]),
        "n_train": len(feats["train"]),
        "n_val": len(feats["val"]),
        "dim": int(feats["train"].shape[1]),
        "num_classes": data.num_classes,
    }
    record.update(score_features(feats["train"], labels["train"], feats["val"], labels["val"]))
    source = _source_scores(
        folder, backbone, record["weights"], source_run, data.split("train"), batch_size
    )
    notes = [record.pop("note"), source.pop("note")]
    record.update(source)
    record["note"] = "; ".join(n for n in notes if n)
    return record


def _mean_over_seeds(records: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """One record from each seed's: numbers averaged (NaN when a seed's is NaN, so a
    failed score is never hidden by the others; one that is the same for every seed kept
    as it is), text fields from the first seed, notes joined; each seed's numbers under
    ``per_seed``."""
    first = records[0]
    merged: dict[str, Any] = {}
    per_seed: dict[str, list[float]] = {}
    for key, value in first.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            merged[key] = value
            continue
        values = [float(r[key]) for r in records]
        per_seed[key] = values
        same = all(v == values[0] for v in values)  # e.g. k, dim: kept as they are
        merged[key] = value if same else float(np.mean(values))
    merged["note"] = "; ".join(dict.fromkeys(r["note"] for r in records if r["note"]))
    merged["budget_seeds"] = seeds
    merged["per_seed"] = per_seed
    return merged


def weights_label(identity: Any) -> str:
    """The scores table's ``weights`` of a feature cache key's weights identity
    (:func:`tlbench.training.feature_cache.weights_identity`): ``imagenet``, ``pretraining run``,
    ``weights file``, ``keras-hub preset`` or ``random(seed N)``."""
    if isinstance(identity, str):
        return identity
    seed = random_seed(identity)
    if seed is not None:
        return random_label(seed)
    return WEIGHTS_LABELS[next(iter(identity))]


def scored_pairs(study: Any) -> list[tuple[str, str]]:
    """(dataset, backbone) pairs scored by the workflow: every pair of the study's matrix
    whose backbone's weights have an identity: pretrained (ImageNet, a file, a
    pretraining run) or the negative control ``{random: SEED}``. Random ``weights: none``
    backbones (drawn from each run's seed) have no cacheable features and are not scored."""
    return sorted(
        {
            (r.dataset, r.backbone)
            for r in study.runs
            if study.backbone_spec(r.backbone)["weights"] != "none"
        }
    )
