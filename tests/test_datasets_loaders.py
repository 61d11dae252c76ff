"""Loaders: folder layouts (generated), and every real dataset in ../shared."""

from __future__ import annotations

import io
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import require_shared
from PIL import Image

from tlbench.core import hashing
from tlbench.datasets import archives, images, load_prepared, prepare
from tlbench.datasets.base import resolve_options
from tlbench.datasets.gtsrb import load_gtsrb
from tlbench.datasets.pets import load_pets

COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "emu": (0, 0, 255)}


def _write_classes(root: Path, per_class: int) -> None:
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (10, 8), colour).save(root / name / f"img{i}.png")


def _check_colours(data) -> None:
    """Every image has its class's colour (labels follow the folder names)."""
    for split in ("train", "val", "test"):
        x, y = data.split(split)
        for image, label in zip(x, y, strict=True):
            assert tuple(image[2, 2]) == COLOURS[data.classes[label]]


def test_folder_without_split_folders(tmp_path):
    root = tmp_path / "wrapper" / "animals"  # single wrapping folders are descended into
    _write_classes(root, per_class=10)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / ".hidden.png").write_bytes(b"junk")
    (root / ".cache").mkdir()
    (root / ".cache" / "x.png").write_bytes(b"junk")
    data = load_prepared(
        prepare(
            {"loader": "folder", "source": str(tmp_path / "wrapper")},
            tmp_path / "p",
            image_size=6,
            seed=0,
        )
    )
    assert data.classes == ["cat", "dog", "emu"]
    assert data.manifest["class_counts"] == {
        "train": [7, 7, 7],
        "val": [1, 1, 1],
        "test": [2, 2, 2],
    }
    assert data.manifest["skipped"] == []
    _check_colours(data)


def test_folder_groups_pattern_splits_and_records_groups(tmp_path):
    """``groups: '^(t\\d+)_'``: frames t<k>_<f>.png of a track stay together when test and
    validation are carved, and every split records its images' track ids."""
    root = tmp_path / "ds"
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for track in range(6):
            for frame in range(3):
                Image.new("RGB", (10, 8), colour).save(root / name / f"t{name}{track}_{frame}.png")
    config = {"loader": "folder", "source": str(root), "groups": r"^(t\w+?)_",
              "test_fraction": 0.34, "val_fraction": 0.25}  # fmt: skip
    data = load_prepared(prepare(config, tmp_path / "p", image_size=6, seed=0))
    groups = {split: data.groups(split) for split in ("train", "val", "test")}
    assert {s: len(g) for s, g in groups.items()} == data.manifest["counts"]
    assert data.manifest["groups"] == {"train": 9, "val": 3, "test": 6}  # whole tracks
    assert not set(groups["train"]) & set(groups["val"])
    assert not set(groups["train"]) & set(groups["test"])
    _check_colours(data)
    # without the option: no group files, no manifest entry
    plain = load_prepared(
        prepare({"loader": "folder", "source": str(root)}, tmp_path / "q", image_size=6, seed=0)
    )
    assert plain.groups("val") is None and "groups" not in plain.manifest
    (root / "cat" / "stray.png").write_bytes((root / "cat" / "tcat0_0.png").read_bytes())
    with pytest.raises(ValueError, match=r"stray.png' does not match the groups pattern"):
        prepare(config, tmp_path / "r", image_size=6, seed=0)
    with pytest.raises(ValueError, match="groups.*not a regular expression"):
        prepare({**config, "groups": "("}, tmp_path / "s", image_size=6, seed=0)


def test_folder_with_split_folders(tmp_path):
    _write_classes(tmp_path / "ds" / "train", per_class=8)
    _write_classes(tmp_path / "ds" / "test", per_class=3)
    data = load_prepared(
        prepare(
            {"loader": "folder", "source": str(tmp_path / "ds")},
            tmp_path / "p",
            image_size=6,
            seed=0,
        )
    )
    assert data.manifest["class_counts"]["test"] == [3, 3, 3]
    assert data.manifest["counts"]["train"] + data.manifest["counts"]["val"] == 24
    assert (
        data.manifest["test"] == "the test/ folder" and "stratified" in data.manifest["validation"]
    )
    _write_classes(tmp_path / "ds" / "val", per_class=2)
    data = load_prepared(
        prepare(
            {"loader": "folder", "source": str(tmp_path / "ds")},
            tmp_path / "p",
            image_size=6,
            seed=0,
        )
    )
    assert data.manifest["class_counts"] == {"train": [8] * 3, "val": [2] * 3, "test": [3] * 3}
    _check_colours(data)


def test_folder_from_zip_and_tar(tmp_path):
    _write_classes(tmp_path / "ds" / "train", per_class=6)
    zpath = tmp_path / "ds.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for file in sorted((tmp_path / "ds").rglob("*.png")):
            zf.write(file, "dataset/" + file.relative_to(tmp_path / "ds").as_posix())
        zf.writestr("__MACOSX/dataset/train/cat/._img0.png", b"resource fork")
    tpath = tmp_path / "ds.tar.gz"
    with tarfile.open(tpath, "w:gz") as tf:
        tf.add(tmp_path / "ds", arcname="dataset")
    for source in (zpath, tpath):
        out = prepare(
            {"loader": "folder", "source": str(source)},
            tmp_path / f"out-{source.name}",
            image_size=6,
            seed=0,
        )
        data = load_prepared(out)
        assert data.classes == ["cat", "dog", "emu"] and sum(data.manifest["counts"].values()) == 18
        assert data.manifest["sources"][0]["sha256"] == hashing.sha256_file(source)
        _check_colours(data)


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="needs 'source'"):
        prepare({"loader": "folder"}, tmp_path / "p", image_size=6, seed=0)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        prepare(
            {"loader": "folder", "source": str(tmp_path / "nowhere")},
            tmp_path / "p",
            image_size=6,
            seed=0,
        )
    _write_classes(tmp_path / "mixed" / "train", per_class=3)
    _write_classes(tmp_path / "mixed" / "extra", per_class=3)
    with pytest.raises(ValueError, match="mixes split folders"):
        prepare(
            {"loader": "folder", "source": str(tmp_path / "mixed")},
            tmp_path / "p",
            image_size=6,
            seed=0,
        )
    _write_classes(tmp_path / "lone" / "train", per_class=4)
    (tmp_path / "lone" / "test" / "yak").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "lone" / "test" / "yak" / "a.png")
    with pytest.raises(ValueError, match=r"\['yak'\] have no training images"):
        prepare(
            {"loader": "folder", "source": str(tmp_path / "lone")},
            tmp_path / "p",
            image_size=6,
            seed=0,
        )
    assert not (tmp_path / "p").exists()


# ---------------------------------------------------------------- real data in ../shared


def test_hymenoptera_real(tmp_path):
    source = require_shared("datasets", "hymenoptera")
    out = tmp_path / "hym"
    data = load_prepared(
        prepare({"loader": "hymenoptera", "source": str(source)}, out, image_size=24, seed=0)
    )
    m = data.manifest
    assert data.classes == ["ants", "bees"]
    assert m["counts"]["train"] + m["counts"]["val"] == 245 and m["counts"]["test"] == 153
    assert m["class_counts"]["test"] == [70, 83]
    assert m["class_counts"]["val"] == [12, 12]
    assert m["skipped"] == []  # imageNotFound.gif decodes and is kept
    assert m["sources"][0]["path"] == "hymenoptera_data.zip"
    assert m["sources"][0]["sha256"] == hashing.sha256_file(source / "hymenoptera_data.zip")
    with archives.ZipReader(source / "hymenoptera_data.zip") as zf:
        gif = images.load(zf.read("hymenoptera_data/train/ants/imageNotFound.gif"), (24, 24))
    x, _ = data.split("train")
    xv, _ = data.split("val")
    assert any(np.array_equal(gif, img) for img in np.concatenate([x, xv]))


def test_oxford_iiit_pet_real(tmp_path):
    source = require_shared("datasets", "oxford_iiit_pet")
    data = load_prepared(
        prepare(
            {"loader": "oxford_iiit_pet", "source": str(source)},
            tmp_path / "pets",
            image_size=20,
            seed=0,
        )
    )
    m = data.manifest
    assert data.classes == ["Abyssinian", "american_bulldog", "Bengal"]
    assert m["counts"]["train"] + m["counts"]["val"] == 300 and m["counts"]["test"] == 298
    assert m["skipped"] == []
    assert [s["path"] for s in m["sources"]] == ["images.tar.gz", "annotations.tar.gz"]
    # the GIF and the RGBA PNG named .jpg decode
    wanted = {"images/Abyssinian_34.jpg": "GIF", "images/Abyssinian_5.jpg": "PNG"}
    with tarfile.open(source / "images.tar.gz") as tf:
        for name, fmt in wanted.items():
            data_bytes = tf.extractfile(name).read()
            assert Image.open(io.BytesIO(data_bytes)).format == fmt
            assert images.load(data_bytes, (20, 20)).shape == (20, 20, 3)
    # breed filter, checked at the loader level (no decoding needed)
    _, options = resolve_options(
        {"loader": "oxford_iiit_pet", "source": str(source), "breeds": ["Bengal", "Abyssinian"]}
    )
    two = load_pets(options, tmp_path / "work", 0, (8, 8))
    assert two.classes == ["Abyssinian", "Bengal"]
    assert len(two.train) + len(two.val) == 200 and len(two.test) == 198 and two.skipped == []
    with pytest.raises(ValueError, match="unknown breed.*'Sphinx'.*valid breeds: Abyssinian"):
        prepare(
            {"loader": "oxford_iiit_pet", "source": str(source), "breeds": ["Sphinx"]},
            tmp_path / "bad",
            image_size=8,
            seed=0,
        )


def test_gtsrb_real_subset(tmp_path):
    source = str(require_shared("datasets", "gtsrb"))
    config = {"loader": "gtsrb", "source": source, "classes": [14, 1, 33], "limit_per_class": 40}
    data = load_prepared(prepare(config, tmp_path / "g", image_size=16, seed=0))
    m = data.manifest
    assert data.classes == ["00014", "00001", "00033"]
    assert m["class_counts"]["test"] == [40, 40, 40]
    assert min(m["class_counts"]["val"]) >= 1 and min(m["class_counts"]["train"]) >= 1
    assert "grouped by track" in m["validation"] and len(m["sources"]) == 3
    assert all(len(s["sha256"]) == 64 for s in m["sources"])
    # the tracks are written with train and validation (validation's standard error
    # counts them); the official test set publishes none
    val_tracks = data.groups("val")
    assert len(val_tracks) == m["counts"]["val"] and m["groups"]["val"] == len(set(val_tracks))
    assert m["groups"]["val"] < m["counts"]["val"]  # ~30 frames a track
    assert not set(val_tracks) & set(data.groups("train")) and data.groups("test") is None
    assert "test" not in m["groups"]
    signs = load_prepared(
        prepare(
            {**config, "roi_crop": True, "class_names": "signs"},
            tmp_path / "roi",
            image_size=16,
            seed=0,
        )
    )
    assert signs.classes == ["Stop", "Speed limit (30km/h)", "Turn right ahead"]
    assert signs.manifest["counts"] == m["counts"]
    plain, roi = data.split("test")[0], signs.split("test")[0]
    assert not np.array_equal(plain, roi)  # the crop changed the pictures
    with pytest.raises(ValueError, match="class ids 0..42"):
        prepare({**config, "classes": [43]}, tmp_path / "bad", image_size=8, seed=0)


def test_gtsrb_tracks_never_straddle(tmp_path):
    source = str(require_shared("datasets", "gtsrb"))
    _, options = resolve_options({"loader": "gtsrb", "source": source, "limit_per_class": 200})
    raw = load_gtsrb(options, tmp_path, 0, (8, 8))
    try:

        def track(name: str) -> str:  # GTSRB/Final_Training/Images/000CC/TTTTT_FFFFF.ppm
            folder, file = name.split("/")[-2:]
            return f"{folder}/{file.rsplit('_', 1)[0]}"

        train = {track(r.name) for r in raw.train.refs}
        val = {track(r.name) for r in raw.val.refs}
        assert train and val and not train & val
        assert set(raw.val.labels.tolist()) == set(range(43))
    finally:
        for close in raw.cleanup:
            close()


@pytest.mark.slow
def test_gtsrb_real_full(tmp_path):
    source = str(require_shared("datasets", "gtsrb"))
    start = time.perf_counter()
    data = load_prepared(
        prepare({"loader": "gtsrb", "source": source}, tmp_path / "g", image_size=32, seed=0)
    )
    seconds = time.perf_counter() - start
    m = data.manifest
    assert m["counts"]["train"] + m["counts"]["val"] == 39209
    assert m["counts"]["test"] == 12630 and m["skipped"] == []
    assert data.num_classes == 43 and min(m["class_counts"]["val"]) >= 1
    assert seconds < 300, f"full GTSRB prepare took {seconds:.0f}s"
    _, options = resolve_options({"loader": "gtsrb", "source": source})
    raw = load_gtsrb(options, tmp_path, 0, (32, 32))
    try:
        tracks = {
            split: {
                "/".join(r.name.split("/")[-2:]).rsplit("_", 1)[0] for r in raw.split(split).refs
            }
            for split in ("train", "val")
        }
        assert not tracks["train"] & tracks["val"]
        assert np.array_equal(raw.val.labels, data.split("val")[1])
    finally:
        for close in raw.cleanup:
            close()
