"""A user's folder is safe (issue 31): never delete what tlbench did not write, fed through
the real command line (``tlbench prepare``, ``tlbench run``); docs/faults.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from engine_helpers import tiny_spec
from PIL import Image

from tlbench.cli import main
from tlbench.core.atomic import MARKER


def _photos(root: Path, per_class: int = 12) -> Path:
    """Issue 31's folder: photos/ with cat/ and dog/ (12 PNGs each) and my_notes.txt."""
    for c, colour in (("cat", (200, 30, 30)), ("dog", (30, 200, 30))):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (10, 8), (colour[0], colour[1], i * 9)).save(root / c / f"{i}.png")
    (root / "my_notes.txt").write_text("my notes")
    return root


def _listing(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _ds_yaml(tmp_path: Path, source: Path, **options) -> Path:
    config = tmp_path / "ds.yaml"
    config.write_text(yaml.safe_dump({"loader": "folder", "source": str(source), **options}))
    return config


@pytest.mark.parametrize("where", ["photos", "photos/prepared", "."])
def test_prepare_into_its_source_is_refused_and_deletes_nothing(tmp_path, capsys, where):
    """`tlbench prepare ds.yaml photos --image-size 16` deleted the photos (issue 31)."""
    photos = _photos(tmp_path / "photos")
    config = _ds_yaml(tmp_path, photos)
    before = _listing(tmp_path)
    out = tmp_path / where
    status = main(["prepare", str(config), str(out), "--image-size", "16"])
    err = capsys.readouterr().err
    assert status == 2, err
    relation = {"photos": "equal to", "photos/prepared": "inside", ".": "containing"}[where]
    assert f"output folder {out} is {relation} the dataset's source {photos}" in err
    assert _listing(tmp_path) == before  # every file still there
    assert not (tmp_path / "photos" / "prepared").exists()


def test_prepare_into_a_folder_of_other_files_is_refused(tmp_path, capsys):
    config = _ds_yaml(tmp_path, _photos(tmp_path / "photos"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("years of work")
    status = main(["prepare", str(config), str(tmp_path / "out"), "--image-size", "8"])
    err = capsys.readouterr().err
    assert status == 2
    assert f"output folder {tmp_path / 'out'} exists and holds files tlbench did not write" in err
    assert "thesis.tex" in err and "nothing was deleted" in err
    assert (tmp_path / "out" / "thesis.tex").read_text() == "years of work"


def test_prepare_replaces_its_own_output_marked_or_of_the_old_layout(tmp_path, capsys):
    config = _ds_yaml(tmp_path, _photos(tmp_path / "photos"))
    out = tmp_path / "prepared"
    args = ["prepare", str(config), str(out), "--image-size", "8"]
    assert main(args) == 0
    assert (out / MARKER).read_text() == "prepared\n"
    assert main(args) == 0  # marked: replaced
    (out / MARKER).unlink()  # a folder prepared before the marker existed: the old layout
    assert main(args) == 0 and (out / MARKER).is_file()
    (out / MARKER).unlink()
    (out / "notes.txt").write_text("mine")  # the old layout plus a file of the user's: refused
    assert main(args) == 2
    assert "notes.txt" in capsys.readouterr().err and (out / "notes.txt").is_file()
    (out / "notes.txt").unlink()
    (out / MARKER).write_text("run\n")  # another kind of output: refused
    assert main(args) == 2
    assert "holds a tlbench output of kind 'run', not 'prepared'" in capsys.readouterr().err


def test_run_into_a_results_folder_of_runs_is_refused_before_training(
    tiny_prepared, tmp_path, capsys
):
    """`tlbench run spec.yaml results/` wiped every earlier run in results/ (issue 31)."""
    results = tmp_path / "results"
    earlier = results / "runs" / "tiny" / "seed0"
    earlier.mkdir(parents=True)
    (earlier / "metrics.json").write_text(json.dumps({"status": "ok"}))
    (results / "study.csv").write_text("a,b\n")
    before = _listing(results)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(tiny_prepared, training={"epochs": 1})))
    status = main(["run", str(spec), str(results)])
    err = capsys.readouterr().err
    assert status == 2
    assert f"output folder {results} exists and holds files tlbench did not write" in err
    assert _listing(results) == before


# ---------------------------------------------------------------- the study's results folder


def _study_with_folder(source: Path | str, results: Path | str) -> dict:
    from test_faults import _tiny_study

    config = _tiny_study()
    config["datasets"]["mine"]["source"] = str(source)
    config["results"] = str(results)
    return config


@pytest.mark.parametrize("results", ["data", "data/photos", "data/photos/results"])
def test_results_holding_a_source_fails_the_dry_run_naming_both(tmp_path, results):
    """A study whose results: holds a dataset's source: `snakemake -n` fails, no job."""
    from test_workflow import snakemake

    photos = _photos(tmp_path / "data" / "photos")
    before = _listing(tmp_path / "data")
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(_study_with_folder(photos, tmp_path / results)))
    result = snakemake("-n", "--configfile", str(config))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"results: '{tmp_path / results}' is " in output
    assert f"datasets.mine.source '{photos}'" in output
    assert "Job stats" not in output and "rule " not in output
    assert _listing(tmp_path / "data") == before


# ---------------------------------------------------------------- one bad file, one skip


def _zip_of(photos: Path, target: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(photos.rglob("*.png")):
            zf.write(path, path.relative_to(photos.parent).as_posix())
    return target


def _prepare_folder(tmp_path: Path, source: Path, capsys, **options) -> tuple[int, str, Path]:
    config = _ds_yaml(tmp_path, source, **options)
    out = tmp_path / "prepared"
    status = main(["prepare", str(config), str(out), "--image-size", "8"])
    return status, capsys.readouterr().err, out


def _skipped(out: Path) -> list[dict]:
    return json.loads((out / "manifest.json").read_text())["skipped"]


def test_a_broken_exif_block_is_one_counted_skip(tmp_path, capsys):
    """A PNG whose EXIF header is cut short raised struct.error out of prepare."""
    photos = _photos(tmp_path / "photos")
    Image.new("RGB", (10, 8)).save(photos / "cat" / "bad_exif.png", exif=b"MM\x00*\x00\x00")
    status, err, out = _prepare_folder(tmp_path, photos, capsys, max_skipped_fraction=0.1)
    assert status == 0, err
    (skip,) = _skipped(out)
    assert skip["file"].endswith("cat/bad_exif.png")
    assert "bad_exif.png: skipped, struct.error: unpack requires a buffer of 4 bytes" in err


def test_a_zip_member_with_a_bad_crc_is_one_counted_skip(tmp_path, capsys):
    archive = _zip_of(_photos(tmp_path / "photos"), tmp_path / "photos.zip")
    data = bytearray(archive.read_bytes())
    header = data.find(b"photos/cat/0.png")  # the first local header's name
    start = header + len("photos/cat/0.png")  # its data follows (no extra field)
    data[start + 40] ^= 0xFF
    archive.write_bytes(bytes(data))
    status, err, out = _prepare_folder(tmp_path, archive, capsys, max_skipped_fraction=0.1)
    assert status == 0, err
    (skip,) = _skipped(out)
    assert skip["file"] == "photos.zip/photos/cat/0.png"
    # the deflate stream breaks first here (zlib.error); a stored member: BadZipFile, bad CRC
    assert skip["reason"].startswith(("zipfile.BadZipFile: ", "zlib.error: ")), skip


def test_an_encrypted_zip_member_is_one_counted_skip(tmp_path, capsys):
    archive = _zip_of(_photos(tmp_path / "photos"), tmp_path / "photos.zip")
    data = bytearray(archive.read_bytes())
    # set the 'encrypted' flag of the member's local and central headers
    name = b"photos/dog/3.png"
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(name)
        while at != -1:
            head = data.rfind(signature, 0, at)
            if head != -1 and at - head in (30, 46):
                data[head + offset] |= 0x01
            at = data.find(name, at + 1)
    archive.write_bytes(bytes(data))
    status, err, out = _prepare_folder(tmp_path, archive, capsys, max_skipped_fraction=0.1)
    assert status == 0, err
    (skip,) = _skipped(out)
    assert skip["file"] == "photos.zip/photos/dog/3.png"
    assert "RuntimeError" in skip["reason"] and "encrypted" in skip["reason"]


def test_a_fifo_in_a_class_folder_is_skipped_not_waited_on(tmp_path):
    """A FIFO named like an image blocked prepare for ever; through the `tlbench` command."""
    import os
    import subprocess
    import sys

    photos = _photos(tmp_path / "photos")
    os.mkfifo(photos / "cat" / "pipe.png")
    config = _ds_yaml(tmp_path, photos, max_skipped_fraction=0.1)
    command = [sys.executable, "-m", "tlbench.cli", "prepare", str(config)]
    result = subprocess.run(
        [*command, str(tmp_path / "out"), "--image-size", "8"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    (skip,) = _skipped(tmp_path / "out")
    assert skip["file"].endswith("cat/pipe.png")
    assert skip["reason"] == "not a regular file (FIFO): only regular files are read"


def test_a_file_over_max_file_mb_is_skipped_naming_the_option(tmp_path, capsys):
    photos = _photos(tmp_path / "photos")
    Image.effect_noise((200, 200), 60).convert("RGB").save(photos / "dog" / "big.png")
    status, err, out = _prepare_folder(
        tmp_path, photos, capsys, max_file_mb=0.01, max_skipped_fraction=0.1
    )
    assert status == 0, err
    (skip,) = _skipped(out)
    assert skip["file"].endswith("dog/big.png")
    assert "is above max_file_mb=0.01" in skip["reason"]


def test_a_zip_bomb_is_refused_naming_the_option(tmp_path, capsys):
    import zipfile

    archive = _zip_of(_photos(tmp_path / "photos"), tmp_path / "photos.zip")
    with zipfile.ZipFile(archive, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("photos/cat/bomb.png", bytes(30_000_000))
    status, err, out = _prepare_folder(tmp_path, archive, capsys)
    assert status == 2 and not out.exists()
    assert "photos.zip expands" in err and "above max_compression_ratio=100" in err
    status, err, out = _prepare_folder(tmp_path, archive, capsys, max_archive_mb=10)
    assert status == 2 and "above max_archive_mb=10" in err


@pytest.mark.parametrize("links", [("cat", "dog"), ("val", "test")])
def test_two_links_to_one_folder_are_an_error_naming_both(tmp_path, capsys, links):
    """Sibling links to one folder gave its images two labels; `val -> test` read as empty."""
    import os

    src = tmp_path / "src"
    if links == ("cat", "dog"):
        _photos(tmp_path / "real")
        _photos(src / "bird")
        os.symlink(tmp_path / "real" / "cat", src / "cat")
        os.symlink(tmp_path / "real" / "cat", src / "dog")
    else:
        _photos(src / "train")
        _photos(src / "test")
        os.symlink(src / "test", src / "val")
    status, err, out = _prepare_folder(tmp_path, src, capsys)
    assert status == 2 and not out.exists()
    first, second = links if links[0] < links[1] else links[::-1]
    assert f"{first} and {second} are the same folder" in err, err


# ---------------------------------------------------------------- class names


def _pngs(folder: Path, n: int, shade: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (10, 8), (shade, i * 9, 40)).save(folder / f"{i}.png")


def test_class_names_are_nfc_normalised_across_split_folders(tmp_path, capsys):
    """train/café in NFD (macOS) and val/, test/café in NFC: one class, not two."""
    import unicodedata

    nfd, nfc = unicodedata.normalize("NFD", "café"), unicodedata.normalize("NFC", "café")
    assert nfd != nfc
    src = tmp_path / "src"
    _pngs(src / "train" / nfd, 10)
    _pngs(src / "train" / "thé", 10, 200)
    for split in ("val", "test"):
        _pngs(src / split / nfc, 3)
        _pngs(src / split / "thé", 3, 200)
    status, err, out = _prepare_folder(tmp_path, src, capsys)
    assert status == 0, err
    assert json.loads((out / "classes.json").read_text()) == [nfc, "thé"]


@pytest.mark.parametrize("other", ["Cat", "cat "])
def test_class_names_equal_but_for_case_or_spaces_are_an_error(tmp_path, capsys, other):
    src = tmp_path / "src"
    _pngs(src / "cat", 10)
    _pngs(src / other, 10, 100)
    _pngs(src / "dog", 10, 200)
    status, err, out = _prepare_folder(tmp_path, src, capsys)
    assert status == 2 and not out.exists()
    first, second = sorted([other, "cat"])
    assert f"class folders {first!r} and {second!r} name one class" in err, err


def test_a_class_missing_from_validation_or_test_is_a_warning_naming_it(tmp_path, capsys):
    src = tmp_path / "src"
    for name, shade in (("cat", 0), ("dog", 100), ("owl", 200)):
        _pngs(src / "train" / name, 10, shade)
    for name, shade in (("cat", 0), ("dog", 100)):
        _pngs(src / "val" / name, 3, shade)
        _pngs(src / "test" / name, 3, shade)
    status, err, out = _prepare_folder(tmp_path, src, capsys)
    assert status == 0, err
    assert "class 'owl' has training images but none in val, test" in err
    warnings = json.loads((out / "manifest.json").read_text())["warnings"]
    assert any("'owl'" in w for w in warnings)


def test_images_directly_in_a_split_folder_are_an_error_naming_it(tmp_path, capsys):
    """train/*.png with no class folders ended in KeyError: 'all'."""
    src = tmp_path / "src"
    _pngs(src / "train", 10)
    _pngs(src / "test" / "cat", 3)
    _pngs(src / "test" / "dog", 3)
    status, err, out = _prepare_folder(tmp_path, src, capsys)
    assert status == 2, err
    assert f"{src}/train/ holds 10 image(s) directly, not in class folders" in err


# ---------------------------------------------------------------- a changed source reaches the study


def test_an_image_added_to_a_finished_study_prepares_and_reruns(tmp_path):
    """Adding an image said "Nothing to be done"; now `snakemake -n` schedules the dataset's
    prepared_dataset and its runs (a real run of a one-run study, then dry runs)."""
    from test_workflow import _dry_counts, _run_study

    photos = _photos(tmp_path / "photos")
    study = {
        "results": "results",
        "datasets": {"mine": {"loader": "folder", "source": str(photos), "image_size": 16}},
        "backbones": {"cnn": {"name": "small_cnn", "kwargs": {"widths": [4]}, "weights": "none"}},
        "strategies": {"scratch": {"name": "scratch"}},
        "augmentations": {"none": {"name": "none"}},
        "training": {"epochs": 1, "batch_size": 8, "early_stopping": None},
        "seeds": [0],
        "resources": {"threads": 1, "mem_mb": 1000, "runtime": 10, "gpu": 0},
        "matrix": [
            {
                "datasets": ["mine"],
                "backbones": ["cnn"],
                "strategies": ["scratch"],
                "augmentations": ["none"],
            }
        ],
    }
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(study))
    run, table = "results/runs/mine/cnn/scratch/none/seed0", "results/tables/mine/duplicates.md"
    _run_study(tmp_path, config, [run, table])
    assert "| train-train | 0 |" in " ".join((tmp_path / table).read_text().split())
    assert _dry_counts(tmp_path, config, [run, table]) == {}  # finished: nothing to be done
    Image.new("RGB", (10, 8), (9, 9, 9)).save(photos / "dog" / "new.png")
    assert _dry_counts(tmp_path, config, [run, table]) == {
        "prepared_dataset": 1,
        "trained_run": 1,
        "duplicates_table": 1,
    }


def test_the_source_fingerprint_follows_what_prepare_reads(tmp_path):
    import os

    from tlbench.datasets.fingerprint import source_fingerprint

    photos = _photos(tmp_path / "photos")
    seen = {source_fingerprint(photos)}
    (photos / ".DS_Store").write_bytes(b"hidden: not data")
    assert source_fingerprint(photos) in seen
    (photos / "cat" / "0.png").rename(photos / "dog" / "moved.png")  # moved
    seen.add(source_fingerprint(photos))
    path = photos / "cat" / "1.png"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # edited
    seen.add(source_fingerprint(photos))
    assert len(seen) == 3
    archive = _zip_of(photos, tmp_path / "photos.zip")
    before = source_fingerprint(archive)
    assert before.startswith("sha256:") and source_fingerprint(archive) == before
    assert source_fingerprint(None) == "" and source_fingerprint(tmp_path / "no") == "missing"


# ---------------------------------------------------------------- duplicates before training


def _distinct(folder: Path, n: int, seed: int) -> None:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8).repeat(2, 0).repeat(2, 1)
        Image.fromarray(pixels).save(folder / f"{seed}_{i}.png")


def _leaky(src: Path) -> Path:
    """train/{cat,dog} 10 images each; test/ holds copies of 4 of them per class (and 4
    new ones); val/ new images; one training cat also filed under dog."""
    import shutil

    for c, seed in (("cat", 1), ("dog", 2)):
        _distinct(src / "train" / c, 10, seed)
        _distinct(src / "val" / c, 3, seed + 10)
        _distinct(src / "test" / c, 4, seed + 20)
        for path in sorted((src / "train" / c).iterdir())[:4]:
            shutil.copy(path, src / "test" / c / f"copy_{path.name}")
    shutil.copy(src / "train" / "cat" / "1_9.png", src / "train" / "dog" / "also_a_dog.png")
    return src


def test_a_test_split_copied_from_train_is_reported_at_prepare(tmp_path, capsys):
    status, err, out = _prepare_folder(tmp_path, _leaky(tmp_path / "src"), capsys)
    assert status == 0, err
    record = json.loads((out / "manifest.json").read_text())["duplicates"]
    pairs = {r["splits"]: (r["exact"], r["near"]) for r in record["pairs"]}
    assert pairs["train-test"] == (8, 8) and pairs["train-val"] == (0, 0)
    assert pairs["train-train"] == (2, 2)  # the cat filed under dog, and itself
    assert record["across_classes"] == {"exact": 1, "near": 1}
    assert sorted(e["class"] for e in record["two_labels"][0]) == ["cat", "dog"]
    assert "train-test exact 8, near 8" in err
    assert "e.g. src/train/cat/1_0.png (train) = src/test/cat/copy_1_0.png (test)" in err.replace(
        str(tmp_path) + "/", ""
    )
    assert "1 exact / 1 near group(s) of copies carry two labels" in err


def test_duplicates_error_fails_prepare_naming_them(tmp_path, capsys):
    status, err, out = _prepare_folder(
        tmp_path, _leaky(tmp_path / "src"), capsys, duplicates="error"
    )
    assert status == 2 and not out.exists()
    assert "duplicates: error: copies across splits or classes (train-test: 8, " in err
    assert "groups under two labels: 1)" in err and "copy_1_0.png" in err


def test_duplicates_drop_removes_the_copies_from_test(tmp_path, capsys):
    status, err, out = _prepare_folder(
        tmp_path, _leaky(tmp_path / "src"), capsys, duplicates="drop"
    )
    assert status == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 21, "val": 6, "test": 8}  # 16 before the drop
    dropped = manifest["duplicates"]["dropped"]
    assert len(dropped) == 8 and all("copy_" in d["file"] for d in dropped)
    import numpy as np

    assert np.load(out / "test_x.npy").shape[0] == np.load(out / "test_y.npy").shape[0] == 8


def test_the_duplicates_table_of_the_report(tmp_path, capsys):
    from tlbench.analysis.duplicates import duplicate_table
    from tlbench.report.render import render

    status, err, out = _prepare_folder(tmp_path, _leaky(tmp_path / "src"), capsys)
    assert status == 0, err
    table = " ".join(render(duplicate_table(out), "md").split())
    assert "| train-test | 8 | 8 |" in table and "| groups under two labels | 1 | 1 |" in table


# ---------------------------------------------------------------- config hygiene


def test_a_yaml_alias_in_a_dataset_config_is_refused(tmp_path, capsys):
    photos = _photos(tmp_path / "photos")
    config = tmp_path / "ds.yaml"
    config.write_text(f"loader: folder\nsource: &where {photos}\ncache_dir: *where\n")
    status = main(["prepare", str(config), str(tmp_path / "out"), "--image-size", "8"])
    err = capsys.readouterr().err
    assert status == 2 and not (tmp_path / "out").exists()
    assert f"{config}: line 3: YAML alias *where refused" in err


def test_a_yaml_alias_in_a_study_config_fails_the_dry_run(tmp_path):
    from test_faults import _tiny_study
    from test_workflow import snakemake

    # an anchor and an alias at the top level (valid YAML wherever the study's own keys
    # are nested)
    text = "x_defaults: &train {epochs: 1}\n" + yaml.safe_dump(_tiny_study()) + "x_more: *train\n"
    config = tmp_path / "study.yaml"
    config.write_text(text)
    result = snakemake("-n", "--configfile", str(config))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "YAML alias *train refused" in output and str(config) in output
    assert "Job stats" not in output


@pytest.mark.parametrize("results", ["/", ".", "./"])
def test_results_at_the_root_or_the_project_folder_is_refused(results):
    from test_faults import _tiny_study

    from tlbench.core.errors import StudyConfigError
    from tlbench.study.load import load_study

    config = _tiny_study()
    config["results"] = results
    with pytest.raises(StudyConfigError) as info:
        load_study(config, check_specs=False)
    assert " the project folder " in str(info.value) and "results: '" in str(info.value)


def test_results_with_a_tilde_is_expanded():
    from test_faults import _tiny_study

    from tlbench.study.load import load_study

    config = _tiny_study()
    config["results"] = "~/tlbench-results"
    study = load_study(config, check_specs=False)
    assert study.results == str(Path.home() / "tlbench-results")
    assert study.prepared_path("mine") == str(Path.home() / "tlbench-results/prepared/mine")


@pytest.mark.parametrize("section", ["seed_study", "results_section"])
def test_every_page_path_a_config_writes_is_constrained(section):
    from test_faults import _tiny_study

    from tlbench.core.errors import StudyConfigError
    from tlbench.study.load import load_study

    config = _tiny_study()
    entry = {"reference": "002"} if section == "seed_study" else {"title": "Mine"}
    config[section] = {**entry, "page": "../../outside.md"}
    with pytest.raises(StudyConfigError, match=rf"{section}.page: '../../outside.md' does not"):
        load_study(config, check_specs=False)


def test_near_duplicates_within_a_distance_are_joined_transitively():
    import numpy as np

    from tlbench.datasets.duplicates import near_groups

    hashes = np.array([0b0, 0b1, 0b11, 0xFF00, 0xFF00], dtype=np.uint64)
    assert near_groups(hashes, 0) == [[3, 4]]
    assert sorted(near_groups(hashes, 1)) == [[0, 1, 2], [3, 4]]  # 0-1 and 1-2: one bit
    assert len(near_groups(hashes, 64)) == 1
