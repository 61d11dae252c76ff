"""The parse-time check of a study imports neither Keras nor TensorFlow; its names-only
lists (tlbench.training.names) are the registries' names."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tlbench.training import names

ROOT = Path(__file__).resolve().parents[1]


def test_names_only_lists_match_the_registries():
    from tlbench.models.augment import AUGMENTATIONS
    from tlbench.models.backbones.applications import keras_applications
    from tlbench.models.backbones.base import BACKBONES

    assert names.keras_application_names() == tuple(sorted(keras_applications()))
    assert names.backbone_names() == tuple(BACKBONES.names())
    assert names.AUGMENTATIONS == tuple(AUGMENTATIONS.names())
    assert names.registry("backbone") is BACKBONES  # imported: the real registry


def test_parse_time_check_imports_no_keras():
    code = textwrap.dedent(
        f"""
        import sys, yaml
        from tlbench.core.errors import StudyConfigError
        from tlbench.study import load as study
        config = yaml.safe_load(open({str(ROOT / "config.yaml")!r}))
        loaded = study.load_study(config, check_specs=True)
        assert loaded.runs
        block = next(iter(config["backbones"]))
        config["backbones"][block]["name"] = "MobileNetV9"
        try:
            study.load_study(config, check_specs=True)
        except StudyConfigError as error:
            message = str(error)
        else:
            raise AssertionError("an unknown backbone name passed the check")
        assert "'MobileNetV9'" in message and "MobileNetV2" in message, message
        heavy = [m for m in ("keras", "tensorflow", "jax") if m in sys.modules]
        assert not heavy, heavy
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
