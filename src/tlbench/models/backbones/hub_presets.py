"""keras-hub presets as backbones, checked without importing Keras or keras-hub.

A study config's backbone ``{preset: <name or folder>}`` is the run spec's backbone
``{name: keras_hub, weights: preset, kwargs: {preset: <name or folder>}}``
(:func:`preset_backbone`); :mod:`tlbench.models.backbones.hub` builds it. What can be
known before any job starts is checked here (the parse-time check imports no Keras):

* a local folder (a path that exists, or one that starts with ``/``, ``.`` or ``~``)
  must hold a saved keras-hub preset: ``config.json`` (the backbone),
  ``image_converter.json`` (its input scaling) and ``model.weights.h5``;
* a name must be one of the installed keras-hub's image-backbone presets (read from
  its ``*_presets.py`` tables, not imported: :func:`known_presets`), of a family that
  :data:`FAMILIES` lists;
* a handle (``kaggle://``, ``hf://``, ``modelscope://``) is passed to keras-hub as is:
  only its download can tell.

``weights``: ``preset`` (the preset's own weights), ``none`` (the architecture with
random initialisation drawn from the run's seed: ``scratch``) or ``{random: SEED}``.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tlbench.core.errors import SpecError
from tlbench.core.hashing import sha256_file
from tlbench.models.weights import RANDOM

#: The registry name of every keras-hub backbone.
HUB_NAME = "keras_hub"
#: The weights value of a preset's own weights.
PRESET_WEIGHTS = "preset"
#: Handles keras-hub downloads itself.
HANDLE_PREFIXES = ("kaggle://", "hf://", "modelscope://")
#: keras-hub model families (folders of ``keras_hub/src/models``) whose backbones tlbench
#: builds: transformers (blocks by transformer layer, pooled token) and CNNs.
TRANSFORMER_FAMILIES = ("vit", "deit", "dinov2", "clip", "siglip")
CNN_FAMILIES = ("resnet", "efficientnet", "mobilenet", "densenet", "vgg", "xception")
FAMILIES = TRANSFORMER_FAMILIES + CNN_FAMILIES
#: Files of a saved preset folder (``backbone.save_to_preset`` + ``converter.save_to_preset``).
PRESET_FILES = ("config.json", "image_converter.json", "model.weights.h5")
#: Keys of the kwargs of a keras_hub backbone.
HUB_KWARGS = ("preset", "pooling")
#: Pooling of a transformer's tokens: the class token, or the mean over all tokens.
POOLINGS = ("cls", "mean")


@functools.cache
def known_presets() -> dict[str, dict[str, Any]]:
    """The installed keras-hub's presets of :data:`FAMILIES`: ``{name: {"family", "handle"}}``.

    Read from its ``keras_hub/src/models/<family>/<family>_presets.py`` literal tables
    (``backbone_presets = {...}``), without importing keras-hub."""
    spec = importlib.util.find_spec("keras_hub")
    if spec is None or not spec.submodule_search_locations:
        raise SpecError(
            "keras-hub is not installed: a backbone preset needs it (requirements-no-deps.txt)"
        )
    models = Path(next(iter(spec.submodule_search_locations))) / "src" / "models"
    found: dict[str, dict[str, Any]] = {}
    for family in FAMILIES:
        path = models / family / f"{family}_presets.py"
        if not path.is_file():
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(
                getattr(t, "id", None) == "backbone_presets" for t in node.targets
            ):
                table = ast.literal_eval(node.value)
                for name, entry in table.items():
                    found[name] = {"family": family, "handle": entry.get("kaggle_handle")}
    return found


def is_local(preset: str) -> bool:
    """Whether ``preset`` names a folder on this machine (rather than a name or handle)."""
    if preset.startswith(HANDLE_PREFIXES):
        return False
    return preset.startswith(("/", ".", "~")) or Path(preset).expanduser().exists()


def check_preset(preset: Any, where: str) -> str:
    """``preset`` if it is a usable keras-hub preset (see the module docstring); else a
    :class:`SpecError` naming ``where`` and the value."""
    if not isinstance(preset, str) or not preset:
        raise SpecError(f"{where}: {preset!r} must be a keras-hub preset name or a folder")
    if preset.startswith(HANDLE_PREFIXES):
        return preset
    if is_local(preset):
        folder = Path(preset).expanduser()
        if not folder.is_dir():
            raise SpecError(f"{where}: preset folder {preset!r} does not exist")
        missing = [name for name in PRESET_FILES if not (folder / name).is_file()]
        if missing:
            raise SpecError(
                f"{where}: preset folder {preset!r} lacks {', '.join(missing)}; a keras-hub "
                "preset folder holds " + ", ".join(PRESET_FILES)
            )
        return preset
    known = known_presets()
    if preset not in known:
        close = difflib.get_close_matches(preset, list(known), n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SpecError(
            f"{where}: {preset!r} is not a keras-hub image-backbone preset of the families "
            f"{', '.join(FAMILIES)}{hint} (a local preset folder starts with / or .)"
        )
    return preset


def preset_backbone(entry: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A config's ``{preset: X, weights?, kwargs?, ...}`` as the registry's form
    ``{name: keras_hub, weights, kwargs: {preset: X, ...}, ...}`` (other keys kept)."""
    out = {k: v for k, v in entry.items() if k != "preset"}
    if "name" in entry:
        raise SpecError(f"{where}: give either name or preset, not both")
    out["name"] = HUB_NAME
    out["kwargs"] = {**dict(entry.get("kwargs") or {}), "preset": entry["preset"]}
    out.setdefault("weights", PRESET_WEIGHTS)
    check_hub_backbone(out["weights"], out["kwargs"], where)
    return out


def check_hub_backbone(weights: Any, kwargs: Mapping[str, Any], where: str) -> None:
    """Weights and kwargs of a ``keras_hub`` backbone (errors name ``where``)."""
    unknown = sorted(set(kwargs) - set(HUB_KWARGS))
    if unknown:
        raise SpecError(
            f"{where}.kwargs: unknown key(s) {unknown} of a keras-hub backbone; valid: "
            + ", ".join(HUB_KWARGS)
        )
    if "preset" not in kwargs:
        raise SpecError(f"{where}: a keras_hub backbone needs kwargs.preset (or give preset:)")
    check_preset(kwargs["preset"], f"{where}.preset")
    pooling = kwargs.get("pooling")
    if pooling is not None and pooling not in POOLINGS:
        raise SpecError(
            f"{where}.kwargs.pooling: {pooling!r} is not valid; valid values: {', '.join(POOLINGS)}"
        )
    ok = weights in (PRESET_WEIGHTS, "none") or (
        isinstance(weights, Mapping) and set(weights) == {RANDOM}
    )
    if not ok:
        raise SpecError(
            f"{where}.weights: {weights!r} is not valid for a keras-hub preset; valid values: "
            f"{PRESET_WEIGHTS} (the preset's own), none, {{random: SEED}}"
        )


def preset_identity(preset: str) -> dict[str, Any]:
    """What identifies a preset's weights in a cache key: a local folder's file digests,
    a published name's handle (versioned), or the handle given."""
    if is_local(preset):
        folder = Path(preset).expanduser()
        return {"preset_files_sha256": {n: sha256_file(folder / n) for n in PRESET_FILES}}
    if preset.startswith(HANDLE_PREFIXES):
        return {"preset_handle": preset}
    return {"preset": preset, "preset_handle": known_presets()[preset]["handle"]}
