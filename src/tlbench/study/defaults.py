"""What ``tlbench compare`` and ``tlbench init`` may put in a study: the ImageNet backbones
they know the Keras weight file of, which of them the Keras cache holds, and the cost model
of the estimate (``costs.yaml`` beside this module, written by ``benchmarks/bench_costs.py``).

No Keras import: the names of Keras's weight files are written out here (as in
``keras.applications``), so that a study can be planned before TensorFlow starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

COSTS = Path(__file__).with_name("costs.yaml")


@dataclass(frozen=True)
class ImageNetBackbone:
    """A ``keras.applications`` model with ImageNet weights: its study ``key`` (the
    config's backbone name), Keras ``name`` and ``kwargs``, and the no-top weight ``file``
    that Keras looks for in ``$KERAS_HOME/models``."""

    key: str
    name: str
    file: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def config(self, weights: str = "imagenet") -> dict[str, Any]:
        """The backbone's entry of a study config."""
        entry: dict[str, Any] = {"name": self.name, "weights": weights}
        if self.kwargs:
            entry["kwargs"] = dict(self.kwargs)
        return entry


def _mobilenet(alpha: float, text: str) -> ImageNetBackbone:
    return ImageNetBackbone(
        f"mobilenet_{text}", "MobileNet", f"mobilenet_{text[0]}_{text[1]}_224_tf_no_top.h5",
        {"alpha": alpha},
    )  # fmt: skip


def _mobilenet_v2(alpha: float) -> ImageNetBackbone:
    return ImageNetBackbone(
        f"mobilenetv2_{str(alpha).replace('.', '')}",
        "MobileNetV2",
        f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_224_no_top.h5",
        {"alpha": alpha},
    )


def _notop(key: str, name: str, stem: str) -> ImageNetBackbone:
    return ImageNetBackbone(key, name, f"{stem}_weights_tf_dim_ordering_tf_kernels_notop.h5")


#: Every backbone ``tlbench compare`` may pick (:func:`tlbench.study.compare.plan` orders them
#: by their measured cost in ``costs.yaml``, cheapest first).
IMAGENET: tuple[ImageNetBackbone, ...] = (
    _mobilenet(0.25, "25"),
    _mobilenet_v2(0.35),
    _mobilenet(0.5, "50"),
    _mobilenet_v2(0.5),
    _mobilenet_v2(1.0),
    ImageNetBackbone("efficientnetb0", "EfficientNetB0", "efficientnetb0_notop.h5"),
    _notop("densenet121", "DenseNet121", "densenet121"),
    ImageNetBackbone("convnext_tiny", "ConvNeXtTiny", "convnext_tiny_notop.h5"),
    _notop("resnet50", "ResNet50", "resnet50"),
    _notop("vgg16", "VGG16", "vgg16"),
)


def keras_models_dir() -> Path:
    """``$KERAS_HOME/models`` (or ``~/.keras/models``): where Keras keeps weight files."""
    home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return Path(home).expanduser() / "models"


def cached_backbones(folder: Path | None = None) -> list[ImageNetBackbone]:
    """The backbones of :data:`IMAGENET` whose weight file is in ``folder``
    (default :func:`keras_models_dir`), in the order of :data:`IMAGENET`."""
    folder = keras_models_dir() if folder is None else folder
    return [entry for entry in IMAGENET if (folder / entry.file).is_file()]


def backbone_by_key(key: str) -> ImageNetBackbone:
    """The :data:`IMAGENET` entry called ``key``; an unknown key is an error listing them."""
    for entry in IMAGENET:
        if entry.key == key:
            return entry
    known = ", ".join(entry.key for entry in IMAGENET)
    raise ValueError(f"backbone {key!r} is not one tlbench compare knows; known: {known}")


def load_costs(path: Path = COSTS) -> dict[str, Any]:
    """The cost table: ``side`` (px), ``machine`` and ``seconds_per_image`` per backbone
    key (``forward``: a frozen forward pass, ``train``: a training step of the whole net)."""
    with open(path) as handle:
        table = yaml.safe_load(handle)
    missing = [entry.key for entry in IMAGENET if entry.key not in table["seconds_per_image"]]
    if missing:
        raise ValueError(f"{path}: no measured cost for {missing}; run benchmarks/bench_costs.py")
    return table
