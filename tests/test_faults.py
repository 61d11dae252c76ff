"""Bad input fed through the real command line (``tlbench prepare``): docs/faults.md.

Each test builds the folder a user would have and runs ``tlbench.cli.main``
(the ``tlbench`` entry point) on it, checking the exit status, the message and
the manifest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tlbench.cli import main
from tlbench.core.errors import StudyConfigError
from tlbench.study.load import load_study


def _images(folder: Path, n: int, ext: str = ".jpg", colour=(200, 30, 30)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (10, 8), colour).save(folder / f"img{i}{ext}", format="JPEG")


def _prepare(tmp_path: Path, source: Path, *extra: str, **options) -> tuple[int, Path]:
    config = tmp_path / "dataset.yaml"
    config.write_text(yaml.safe_dump({"loader": "folder", "source": str(source), **options}))
    out = tmp_path / "prepared"
    status = main(["prepare", str(config), str(out), "--image-size", "6", *extra])
    return status, out


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_jfif_class_is_kept_not_relabelled(tmp_path, capsys):
    """Issue 15's reproduction: cat/{indoor,outdoor}/*.jpg + dog/*.jfif, 12 each."""
    _images(tmp_path / "src" / "cat" / "indoor", 12)
    _images(tmp_path / "src" / "cat" / "outdoor", 12)
    _images(tmp_path / "src" / "dog", 12, ".jfif", colour=(30, 200, 30))
    (tmp_path / "src" / "dog" / "b.jpe").write_bytes((tmp_path / "src/dog/img0.jfif").read_bytes())
    status, out = _prepare(tmp_path, tmp_path / "src")
    assert status == 0, capsys.readouterr().err
    assert json.loads((out / "classes.json").read_text()) == ["cat", "dog"]
    assert sum(_manifest(out)["counts"].values()) == 37  # 24 cats, 12 .jfif + 1 .jpe dogs
    assert ": 2 classes: cat (24), dog (13); train/val/test " in capsys.readouterr().out


def test_class_folder_without_images_is_an_error_naming_it(tmp_path, capsys):
    _images(tmp_path / "src" / "cat" / "indoor", 12)
    _images(tmp_path / "src" / "cat" / "outdoor", 12)
    (tmp_path / "src" / "dog").mkdir()
    for i in range(3):
        (tmp_path / "src" / "dog" / f"p{i}.heic").write_bytes(b"ftypheic")
    (tmp_path / "src" / "dog" / "notes.txt").write_text("x")
    status, out = _prepare(tmp_path, tmp_path / "src")
    err = capsys.readouterr().err
    assert status == 2 and not out.exists()
    assert "class folder 'dog' holds 4 file(s) but no image file" in err
    assert "extensions found: .heic, .txt" in err


def test_unused_files_and_empty_class_folder_are_reported(tmp_path, capsys):
    src = tmp_path / "src" / "wrapper"  # one wrapper folder, descended into
    for name in ("ant", "bee"):
        _images(src / name, 10)
    (src / "ant" / "notes.txt").write_text("x")
    (src / "ant" / ".DS_Store").write_bytes(b"hidden: ignored")
    (src / "README.md").write_text("outside any class")
    (src / "wasp").mkdir()  # empty class folder: skipped with a warning
    (src / "wasp" / ".keep").write_text("")
    status, out = _prepare(tmp_path, tmp_path / "src")
    err = capsys.readouterr().err
    assert status == 0, err
    assert json.loads((out / "classes.json").read_text()) == ["ant", "bee"]
    unused = {u["path"]: u["reason"] for u in _manifest(out)["unused"]}
    assert unused == {
        "wrapper/README.md": "outside any class folder",
        "wrapper/ant/notes.txt": "unknown extension .txt",
        "wrapper/wasp": "empty class folder",
    }
    assert "3 source file(s)/folder(s) not used" in err
    for path, reason in unused.items():
        assert f"{path}: {reason}" in err


def test_one_class_is_an_error_naming_it(tmp_path, capsys):
    _images(tmp_path / "src" / "cat", 12)
    (tmp_path / "src" / "dog").mkdir(parents=True)
    status, out = _prepare(tmp_path, tmp_path / "src")
    err = capsys.readouterr().err
    assert status == 2 and not out.exists()
    assert "only one class folder with images, 'cat'" in err
    assert "dog: empty class folder" in err


def test_dangling_symlink_is_a_skipped_file(tmp_path, capsys):
    for name in ("ant", "bee"):
        _images(tmp_path / "src" / name, 20)
    os.symlink(tmp_path / "gone.jpg", tmp_path / "src" / "ant" / "link.jpg")
    status, out = _prepare(tmp_path, tmp_path / "src", max_skipped_fraction=0.05)
    assert status == 0, capsys.readouterr().err
    (skipped,) = _manifest(out)["skipped"]
    assert skipped["file"].endswith("ant/link.jpg") and "cannot read" in skipped["reason"]
    assert sum(_manifest(out)["counts"].values()) == 40
    status, out = _prepare(tmp_path, tmp_path / "src")  # default budget: 1 of 41 is too many
    assert status == 2
    assert "1 of 41 images" in capsys.readouterr().err


def test_awkward_image_files_through_prepare(tmp_path, capsys):
    """CMYK, RGBA, 16-bit, animated GIF and a truncated JPEG in one class folder."""
    odd = tmp_path / "src" / "odd"
    odd.mkdir(parents=True)
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(odd / "cmyk.jpg", quality=95)  # white
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(odd / "rgba.png")  # transparent red
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(odd / "grey16.png")  # white
    frames = [Image.new("RGB", (8, 8), c) for c in [(0, 0, 255), (0, 255, 0)]]
    frames[0].save(odd / "anim.gif", save_all=True, append_images=frames[1:])  # blue first
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    Image.fromarray(noise).save(odd / "full.jpg")
    (odd / "trunc.jpg").write_bytes((odd / "full.jpg").read_bytes()[:600])
    _images(tmp_path / "src" / "plain", 6)
    status, out = _prepare(tmp_path, tmp_path / "src", max_skipped_fraction=0.2)
    assert status == 0, capsys.readouterr().err
    manifest = _manifest(out)
    (skipped,) = manifest["skipped"]
    assert skipped["file"].endswith("odd/trunc.jpg")
    assert "trunc.jpg: skipped" in capsys.readouterr().err
    pixels = {}
    for split in ("train", "val", "test"):
        x = np.load(out / f"{split}_x.npy")
        y = np.load(out / f"{split}_y.npy")
        for image, label in zip(x, y, strict=True):
            if label == 0:  # "odd"
                pixels[tuple(int(v) for v in image[3, 3])] = True
    assert {(0, 0, 0), (0, 0, 255)} <= set(pixels)  # alpha on black; the GIF's first frame
    assert any(min(p) >= 250 for p in pixels)  # CMYK white, 16-bit white


def test_archive_path_escape_through_prepare(tmp_path, capsys):
    import zipfile

    _images(tmp_path / "ds" / "a", 3)
    archive = tmp_path / "ds.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(tmp_path / "ds" / "a" / "img0.jpg", "a/img0.jpg")
        zf.writestr("../evil.jpg", b"evil")
    status, out = _prepare(tmp_path, archive)
    assert status == 2 and not out.exists()
    assert "'../evil.jpg'" in capsys.readouterr().err


# ---------------------------------------------------------------- study config: every run spec

ROOT = Path(__file__).resolve().parents[1]


def _tiny_study() -> dict:
    config = yaml.safe_load((ROOT / "configs/test/tiny.yaml").read_text())
    config["datasets"]["mine"] = {"loader": "folder", "source": "photos", "image_size": 16}
    config["matrix"].append(
        {
            "datasets": ["mine"],
            "backbones": ["cnn_scratch"],
            "strategies": ["fine_tune"],
            "augmentations": ["flip"],
        }
    )
    return config


def _set(config: dict, path: str, value) -> dict:
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return config


# (key set in the tiny study, value, what the error names)
BAD_STUDY_VALUES = [
    ("strategies.scratch.name", "scrach", "strategies.scratch.name: unknown strategy 'scrach'"),
    ("backbones.cnn_scratch.name", "small_cn", "backbones.cnn_scratch.name: unknown backbone"),
    ("augmentations.flip.name", "flipp", "augmentations.flip.name: unknown augmentation 'flipp'"),
    (
        "strategies.fine_tune.params.unfreez",
        3,
        "strategies.fine_tune.params.unfreez: unknown parameter of strategy 'fine_tune'",
    ),
    ("datasets.mine.val_fracton", 0.2, "datasets.mine.val_fracton: unknown option(s)"),
    (
        "datasets.mine.val_fraction",
        1.5,
        "datasets.mine.val_fraction: val_fraction must be in (0, 1)",
    ),
    ("training.batch_size", 8.0, "training.batch_size: 8.0 must be an integer >= 1"),
    ("datasets.mine.test_fraction", "1e-1", "datasets.mine.test_fraction: dataset option"),
    ("datasets.mine.test_fraction", "1e-1", "YAML read '1e-1' as a string"),
    (
        "strategies.fine_tune.training.learning_rate",
        "1e-3",
        "strategies.fine_tune.training.learning_rate: '1e-3' is not of type 'number'",
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "named"), BAD_STUDY_VALUES, ids=[c[0] for c in BAD_STUDY_VALUES]
)
def test_every_run_spec_is_validated_with_the_config_key(path, value, named):
    with pytest.raises(StudyConfigError) as info:
        load_study(_set(_tiny_study(), path, value))
    assert named in str(info.value)


def test_yaml_exponent_without_point_gets_a_hint():
    config = _set(_tiny_study(), "training.learning_rate", "1e-3")
    with pytest.raises(StudyConfigError, match=r"write .*1\.0e-3"):
        load_study(config)


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [BAD_STUDY_VALUES[0], BAD_STUDY_VALUES[4]],
    ids=["scrach", "val_fracton"],
)
def test_snakemake_dry_run_fails_naming_the_key(tmp_path, path, value, named):
    """Through ``snakemake -n``: non-zero, the key named, before any job."""
    from test_workflow import snakemake

    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(_set(_tiny_study(), path, value)))
    result = snakemake("-n", "--configfile", str(config))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert named in output
    assert "Job stats" not in output and "rule " not in output


def test_run_spec_exponent_without_point_gets_a_hint(tiny_prepared, tmp_path, capsys):
    from engine_helpers import tiny_spec

    spec = tmp_path / "spec.yaml"
    text = yaml.safe_dump(tiny_spec(tiny_prepared, training={"learning_rate": 0.5}))
    spec.write_text(text.replace("learning_rate: 0.5", "learning_rate: 1e-3"))
    assert "learning_rate: 1e-3" in spec.read_text()
    assert main(["run", str(spec), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "training.learning_rate: '1e-3' must be a number > 0" in err and "1.0e-3" in err


# ---------------------------------------------------------------- outputs: leftovers, modes, size


def _synthetic_config(tmp_path: Path) -> Path:
    config = tmp_path / "synthetic.yaml"
    config.write_text(yaml.safe_dump({"loader": "synthetic", "num_classes": 2, "per_class": 10}))
    return config


def test_leftovers_of_a_killed_prepare_are_removed_on_rewrite(tmp_path):
    import socket

    out = tmp_path / "prepared"
    stale = tmp_path / ".prepared.tmp-otherhost-123-abc"  # another host: a killed job
    (stale / ".work-x").mkdir(parents=True)
    (stale / "train_x.npy.partial").write_bytes(b"\0" * 1000)
    dead = tmp_path / f".prepared.tmp-{socket.gethostname()}-999999999-abc"  # no such pid
    dead.mkdir()
    old = tmp_path / ".prepared.old-42"
    old.mkdir()
    live = tmp_path / f".prepared.tmp-{socket.gethostname()}-{os.getppid()}-abc"  # running
    live.mkdir()
    other = tmp_path / ".other.tmp-otherhost-1-abc"  # another output's: not ours to remove
    other.mkdir()
    config = _synthetic_config(tmp_path)
    assert main(["prepare", str(config), str(out), "--image-size", "8"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, other.name, "prepared", config.name]
    )
    assert not any(p.name.startswith(".work-") for p in out.iterdir())


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        out = tmp_path / "prepared"
        assert (
            main(["prepare", str(_synthetic_config(tmp_path)), str(out), "--image-size", "8"]) == 0
        )
    finally:
        os.umask(previous)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    for name in ("manifest.json", "classes.json", "train_x.npy", "test_y.npy"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_huge_image_size_is_refused_up_front(tmp_path, capsys):
    out = tmp_path / "prepared"
    status = main(["prepare", str(_synthetic_config(tmp_path)), str(out), "--image-size", "100000"])
    err = capsys.readouterr().err
    assert status == 2 and not out.exists()
    assert "image_size 100000x100000" in err and "choose a smaller --image-size" in err
    assert list(tmp_path.iterdir()) == [tmp_path / "synthetic.yaml"]  # no leftover


def test_out_of_memory_names_the_image_size(tmp_path, capsys, monkeypatch):
    """A generated set too large for memory (numpy refuses the allocation): one line, exit 2."""
    from tlbench.datasets import synthetic

    def refuse(*args, **kwargs):
        raise MemoryError("Unable to allocate 215. GiB for an array")

    monkeypatch.setattr(synthetic, "generate", refuse)
    out = tmp_path / "prepared"
    status = main(["prepare", str(_synthetic_config(tmp_path)), str(out), "--image-size", "20000"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and not out.exists() and len(err.splitlines()) == 1
    assert "out of memory: Unable to allocate 215. GiB" in err
    assert "--image-size 20000 may be too large" in err


def test_symlinked_class_folder_is_followed_once(tmp_path, capsys):
    _images(tmp_path / "elsewhere" / "cats", 12)
    _images(tmp_path / "src" / "dog", 12)
    os.symlink(tmp_path / "elsewhere" / "cats", tmp_path / "src" / "cat")
    os.symlink(tmp_path / "src", tmp_path / "src" / "dog" / "loop")  # a cycle: not walked twice
    status, out = _prepare(tmp_path, tmp_path / "src")
    assert status == 0, capsys.readouterr().err
    assert json.loads((out / "classes.json").read_text()) == ["cat", "dog"]
    manifest = _manifest(out)
    assert [sum(c) for c in zip(*manifest["class_counts"].values(), strict=True)] == [12, 12]
    assert manifest["unused"] == []
