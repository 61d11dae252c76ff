"""Earlier runs as weight sources (``weights: {run: RUN_FOLDER}``): a finished run's model.keras loaded, its backbone's weights copied into a new backbone, and its whole classifier (with its class names) for the source scores and ``direct``."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras

from tlbench.core.errors import InputShapeError

# The modules whose layers a saved model.keras may hold register them on import
# (``tlbench>Name``): augmentation, preprocessing, the strategies' class selector.
from tlbench.models import augment, layers, preprocess  # noqa: F401

# ---------------------------------------------------------------------------
# Earlier runs as weight sources
# ---------------------------------------------------------------------------


def load_run_model(run_dir: Path) -> keras.Model:
    """Load ``run_dir/model.keras`` (custom tlbench layers registered first)."""
    path = run_dir / "model.keras"
    if not path.is_file():
        raise FileNotFoundError(
            f"weights {{run: {str(run_dir)!r}}}: {path} does not exist (not a finished run?)"
        )
    with zipfile.ZipFile(path) as archive:
        hub_layers = b'"keras_hub' in archive.read("config.json")
    if hub_layers:  # a keras-hub preset backbone: its classes register on import
        # deferred: keras-hub is heavy, and only such models need it
        import keras_hub  # noqa: F401

        from tlbench.models.backbones import hub  # noqa: F401
    return keras.saving.load_model(path, compile=False)


def load_run_backbone(run_dir: Path) -> keras.Model:
    """The nested ``"backbone"`` layer of an earlier run's ``model.keras``."""
    model = load_run_model(run_dir)
    try:
        return model.get_layer("backbone")
    except ValueError:
        names = ", ".join(layer.name for layer in model.layers)
        raise ValueError(
            f"{run_dir / 'model.keras'} has no nested layer named 'backbone'; its layers: {names}"
        ) from None


def copy_weights(source: keras.Model, target: keras.Model, what: str) -> None:
    """Copy all weights of ``source`` into ``target``; shapes must match one by one."""
    src, dst = source.weights, target.weights
    if len(src) != len(dst):
        raise ValueError(
            f"cannot load {what}: the saved backbone has {len(src)} weight tensors, "
            f"the configured one {len(dst)} (different architecture or kwargs?)"
        )
    for s, d in zip(src, dst, strict=True):
        if tuple(s.shape) != tuple(d.shape):
            raise ValueError(
                f"cannot load {what}: weight {s.path} has shape {tuple(s.shape)} but the "
                f"configured backbone's {d.path} has {tuple(d.shape)} (different input size "
                "or kwargs?)"
            )
    for s, d in zip(src, dst, strict=True):
        d.assign(keras.ops.convert_to_numpy(s))


def load_run_classifier(
    run_dir: Path, input_shape: tuple[int, int, int]
) -> tuple[keras.Model, list[str]]:
    """An earlier run's whole classifier and its class names. Images of another height
    and width are resized to the size it was trained at first (as for the ImageNet
    classifier); another number of channels is an :class:`InputShapeError`."""
    model = load_run_model(run_dir)
    saved = tuple(model.input_shape[1:])
    if saved[-1] != input_shape[-1]:
        raise InputShapeError(
            f"the source model in {run_dir} takes inputs of shape {saved}, "
            f"but this run feeds {tuple(input_shape)}: it takes {saved[-1]} channels, "
            f"not {input_shape[-1]}",
            saved,
            tuple(input_shape),
        )
    if saved != tuple(input_shape):
        inputs = keras.Input(shape=input_shape, name="image")
        resized = keras.layers.Resizing(*saved[:2], name="resize_to_source")(inputs)
        model = keras.Model(inputs, model(resized), name="source_classifier")
    return model, run_classes(run_dir)


def run_classes(run_dir: Path) -> list[str]:
    """Class names of a run: ``metrics.json`` "classes", else ``classes.json``."""
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        data = json.loads(metrics.read_text())
        if isinstance(data, dict) and data.get("classes"):
            return [str(c) for c in data["classes"]]
    classes = run_dir / "classes.json"
    if classes.is_file():
        return [str(c) for c in json.loads(classes.read_text())]
    raise FileNotFoundError(
        f"no class names for the source model in {run_dir}: expected 'classes' in "
        f"{metrics} or a {classes} file"
    )
