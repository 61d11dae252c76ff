"""prepare() / load_prepared(): contract, manifest, atomicity, option validation, generators."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image

import tlbench
from tlbench.core.errors import UnknownNameError
from tlbench.datasets import fractal, images, load_prepared, make_tiny_prepared, prepare
from tlbench.datasets.base import DATASETS

EXPECTED_LOADERS = {
    "gtsrb",
    "oxford_iiit_pet",
    "hymenoptera",
    "folder",
    "digits",
    "fractal",
    "synthetic",
}


def _image_folder(root, per_class=6, size=12, extra=None):
    """class folders a/ b/ of small PNGs (+ optional extra files {relpath: bytes})."""
    for c, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        folder = root / "ab"[c]
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (size, size + i), colour).save(folder / f"{i}.png")
    for rel, data in (extra or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_registry_has_all_loaders():
    assert set(DATASETS.names()) == EXPECTED_LOADERS


def test_unknown_loader_and_keys_list_valid_ones(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown dataset loader 'mnist'.*digits.*synthetic"):
        prepare({"loader": "mnist"}, tmp_path / "x", image_size=8, seed=0)
    with pytest.raises(ValueError, match="no 'loader'; valid loaders: digits"):
        prepare({"source": "x"}, tmp_path / "x", image_size=8, seed=0)
    with pytest.raises(
        ValueError, match=r"unknown option\(s\) 'per_klass'.*valid options: .*per_class"
    ):
        prepare({"loader": "synthetic", "per_klass": 3}, tmp_path / "x", image_size=8, seed=0)
    with pytest.raises(ValueError, match="'per_class' of loader 'synthetic' must be int"):
        prepare({"loader": "synthetic", "per_class": "3"}, tmp_path / "x", image_size=8, seed=0)
    with pytest.raises(ValueError, match="seed"):
        prepare({"loader": "synthetic"}, tmp_path / "x", image_size=8, seed=-1)
    with pytest.raises(ValueError, match=r"max_skipped_fraction must be in \[0, 1\], got 5"):
        prepare(
            {"loader": "synthetic", "max_skipped_fraction": 5}, tmp_path / "x", image_size=8, seed=0
        )
    with pytest.raises(ValueError, match="loader must be a name.*valid loaders: digits"):
        prepare({"loader": ["gtsrb"]}, tmp_path / "x", image_size=8, seed=0)
    with pytest.raises(ValueError, match="must be a mapping"):
        prepare(["synthetic"], tmp_path / "x", image_size=8, seed=0)
    assert not (tmp_path / "x").exists()


def test_study_keys_must_agree(tmp_path):
    entry = {"loader": "synthetic", "image_size": 8, "seed": 2}
    data = load_prepared(prepare(entry, tmp_path / "ok", image_size=8, seed=2))
    assert data.image_size == (8, 8) and data.manifest["params"] == entry
    with pytest.raises(ValueError, match="image_size 8 but prepare.. was asked for \\[16, 16\\]"):
        prepare(entry, tmp_path / "bad", image_size=16, seed=2)
    with pytest.raises(ValueError, match="seed 2 but prepare.. was given 0"):
        prepare(entry, tmp_path / "bad", image_size=8, seed=0)


def test_prepare_writes_contract_files(tmp_path):
    config = {"loader": "synthetic", "num_classes": 4, "per_class": 20}
    out = prepare(config, tmp_path / "syn", image_size=(12, 10), seed=3)
    assert out == tmp_path / "syn"
    names = {p.name for p in out.iterdir()}
    assert names == {".tlbench-output", "classes.json", "manifest.json"} | {
        f"{s}_{a}.npy" for s in ("train", "val", "test") for a in "xy"
    }
    data = load_prepared(out)
    assert data.classes == ["class_0", "class_1", "class_2", "class_3"]
    assert data.num_classes == 4 and data.image_size == (12, 10)
    manifest = data.manifest
    assert manifest["dataset"] == "synthetic" and manifest["seed"] == 3
    assert manifest["image_size"] == [12, 10]
    assert manifest["params"] == config
    assert (
        manifest["options"]["per_class"] == 20
        and manifest["options"]["max_skipped_fraction"] == 0.01
    )
    assert manifest["tlbench_version"] == tlbench.__version__
    assert manifest["skipped"] == [] and "stratified" in manifest["validation"]
    total = 0
    for split in ("train", "val", "test"):
        x, y = data.split(split)
        assert isinstance(x, np.memmap) and x.dtype == np.uint8 and x.shape[1:] == (12, 10, 3)
        assert y.dtype == np.int64 and len(y) == len(x) == manifest["counts"][split]
        assert np.bincount(y, minlength=4).tolist() == manifest["class_counts"][split]
        assert min(manifest["class_counts"][split]) >= 1
        total += len(y)
    assert total == 80
    with pytest.raises(ValueError, match="unknown split 'valid'; valid splits: train, val, test"):
        data.split("valid")


def test_prepare_is_deterministic(tmp_path):
    config = {"loader": "synthetic"}
    a = load_prepared(prepare(config, tmp_path / "a", image_size=8, seed=1))
    b = load_prepared(prepare(config, tmp_path / "b", image_size=8, seed=1))
    c = load_prepared(prepare(config, tmp_path / "c", image_size=8, seed=2))
    for split in ("train", "val", "test"):
        assert np.array_equal(a.split(split)[0], b.split(split)[0])
        assert np.array_equal(a.split(split)[1], b.split(split)[1])
    assert not np.array_equal(a.split("train")[0], c.split("train")[0])


def test_synthetic_classes_are_separable(tiny_prepared):
    data = load_prepared(tiny_prepared)
    x, y = data.split("train")
    means = np.stack([x[y == c].reshape(-1, 3).mean(0) for c in range(data.num_classes)])
    xv, yv = data.split("test")
    pred = np.argmin(((xv.reshape(len(xv), -1, 3).mean(1)[:, None] - means[None]) ** 2).sum(-1), 1)
    assert (pred == yv).mean() == 1.0


def test_exception_mid_prepare_leaves_no_outdir(tmp_path, monkeypatch):
    source = _image_folder(tmp_path / "src")
    calls = {"n": 0}
    real_decode = images.decode

    def boom(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise MemoryError("disk on fire")  # any other error of one file is a skip
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(images, "decode", boom)
    target = tmp_path / "out" / "prepared"
    with pytest.raises(MemoryError, match="disk on fire"):
        prepare({"loader": "folder", "source": str(source)}, target, image_size=8, seed=0)
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []  # no temporary leftovers either
    # an existing complete folder survives a failed re-prepare unchanged
    monkeypatch.setattr(images, "decode", real_decode)
    prepare({"loader": "folder", "source": str(source)}, target, image_size=8, seed=0)
    before = (target / "manifest.json").read_text()
    calls["n"] = 0
    monkeypatch.setattr(images, "decode", boom)
    with pytest.raises(MemoryError):
        prepare({"loader": "folder", "source": str(source)}, target, image_size=16, seed=0)
    assert (target / "manifest.json").read_text() == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["prepared"]


def test_undecodable_files_are_skipped_and_recorded(tmp_path):
    source = _image_folder(
        tmp_path / "src", per_class=20, extra={"a/broken.png": b"\x89PNG\r\n\x1a\n garbage"}
    )
    config = {"loader": "folder", "source": str(source), "max_skipped_fraction": 0.05}
    data = load_prepared(prepare(config, tmp_path / "out", image_size=8, seed=0))
    skipped = data.manifest["skipped"]
    assert (
        len(skipped) == 1 and skipped[0]["file"].endswith("a/broken.png") and skipped[0]["reason"]
    )
    assert sum(data.manifest["counts"].values()) == 40
    for split in ("train", "val", "test"):  # arrays were compacted to the decoded images
        x, y = data.split(split)
        assert len(x) == len(y) == data.manifest["counts"][split]
    with pytest.raises(ValueError, match=r"1 of 41 images \(2.44%\).*max_skipped_fraction=0.01"):
        prepare(
            {"loader": "folder", "source": str(source)}, tmp_path / "strict", image_size=8, seed=0
        )
    assert not (tmp_path / "strict").exists()


def test_load_prepared_names_missing_files(tmp_path):
    out = prepare({"loader": "synthetic"}, tmp_path / "p", image_size=8, seed=0)
    (out / "val_y.npy").unlink()
    with pytest.raises(FileNotFoundError, match="val_y.npy"):
        load_prepared(out)


def test_digits_default_and_low_data(tmp_path):
    data = load_prepared(prepare({"loader": "digits"}, tmp_path / "d", image_size=16, seed=0))
    assert data.classes == [str(d) for d in range(10)]
    assert sum(data.manifest["counts"].values()) == 1797
    assert 0.18 < data.manifest["counts"]["test"] / 1797 < 0.22
    x, _ = data.split("train")
    assert x.shape[1:] == (16, 16, 3) and x.max() > 200
    assert (x[..., 0] == x[..., 1]).all()  # grey replicated to RGB
    config = {"loader": "digits", "train_per_class": 10, "val_per_class": 5}
    low = load_prepared(prepare(config, tmp_path / "low", image_size=8, seed=0))
    assert low.manifest["class_counts"]["train"] == [10] * 10
    assert low.manifest["class_counts"]["val"] == [5] * 10
    assert low.manifest["counts"]["test"] == 1797 - 150
    with pytest.raises(ValueError, match="val_per_class needs train_per_class"):
        prepare({"loader": "digits", "val_per_class": 3}, tmp_path / "bad", image_size=8, seed=0)


def test_fractal_is_deterministic_and_fast():
    start = time.perf_counter()
    a, labels = fractal.generate(4, 10, (32, 32), seed=0)
    elapsed = time.perf_counter() - start
    b, _ = fractal.generate(4, 10, (32, 32), seed=0)
    c, _ = fractal.generate(4, 10, (32, 32), seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == (40, 32, 32, 3) and a.dtype == np.uint8
    assert labels.tolist() == [c for c in range(4) for _ in range(10)]
    assert elapsed < 10
    lit = (a.max(axis=-1) > 0).reshape(40, -1).mean(1)
    assert (lit > 0.02).all() and (lit < 0.9).all()  # every image draws something, not a blob
    # class IFS are independent of how many classes are drawn
    assert np.array_equal(fractal.sample_ifs(0, 2), fractal.sample_ifs(0, 2))
    # images of a class are more alike than images of different classes (shape, not colour)
    grey = (a.max(axis=-1) > 0).reshape(4, 10, -1).astype(float)
    within = np.mean([np.corrcoef(grey[k])[np.triu_indices(10, 1)].mean() for k in range(4)])
    assert within > 0.05


def test_fractal_through_prepare(tmp_path):
    config = {"loader": "fractal", "num_classes": 3, "per_class": 10, "points": 512}
    data = load_prepared(prepare(config, tmp_path / "f", image_size=16, seed=0))
    assert data.classes == ["fractal_000", "fractal_001", "fractal_002"]
    assert data.manifest["class_counts"]["test"] == [1, 1, 1]
    assert sum(data.manifest["counts"].values()) == 30


def test_make_tiny_prepared(tmp_path):
    path = make_tiny_prepared(tmp_path / "tiny", num_classes=2, size=8, per_class=10)
    data = load_prepared(path)
    assert data.num_classes == 2 and data.image_size == (8, 8)
    assert json.loads((path / "classes.json").read_text()) == ["class_0", "class_1"]
