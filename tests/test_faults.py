"""Bad input fed through the real command line (``tlbench prepare``): docs/faults.md.

Each test builds the folder a user would have and runs ``tlbench.cli.main``
(the ``tlbench`` entry point) on it, checking the exit status, the message and
the manifest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml
from PIL import Image

from tlbench.cli import main


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
