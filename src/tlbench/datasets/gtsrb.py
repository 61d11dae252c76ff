"""``gtsrb``: the German Traffic Sign Recognition Benchmark (43 classes).

Sources: the official ``GTSRB_Final_Training_Images.zip``,
``GTSRB_Final_Test_Images.zip`` and ``GTSRB_Final_Test_GT.zip`` (downloaded
from the official archive, or the files of those names in the ``source``
folder). The zips are read in place (every member name is safety-checked).

* Train: ``GTSRB/Final_Training/Images/000NN/*.ppm`` listed in ``GT-000NN.csv``
  (``;``-separated: Filename, Width, Height, Roi.X1, Roi.Y1, Roi.X2, Roi.Y2,
  ClassId). File names are ``TTTTT_FFFFF.ppm``: track and frame, where a track
  is ~30 frames of one physical sign.
* Validation: **grouped by track**: ``val_fraction`` of the tracks of each class
  (seeded), so no physical sign straddles train and validation; the track ids
  are written with the train and validation splits (``{split}_groups.npy``),
  so validation's standard error counts tracks, not frames.
* Test: the official test set (its track ids are not published: its images are
  resampled one by one), ``GTSRB/Final_Test/Images/*.ppm`` with labels
  from ``GT-final_test.csv`` in the GT zip.

Options: ``roi_crop: true`` crops each image to its ROI box; the box is scaled
by (actual image size / CSV Width, Height), so it also fits copies that were
resized after the CSVs were written. ``classes: [ids]`` keeps only those class
ids (labels re-indexed in that order). ``limit_per_class: N`` is for quick
tests: per class, whole training tracks are taken in seeded random order until
at least N images (and two tracks) are in, and N random test images.
``class_names``: ``"ids"`` (default: the official folder names ``"00000"`` ..
``"00042"``) or ``"signs"`` (the English names of the widely used
``signnames.csv``, :data:`SIGN_NAMES`).
"""

from __future__ import annotations

import csv
import functools
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from tlbench.datasets.archives import ZipReader
from tlbench.datasets.base import (
    ImageRef,
    Option,
    RawSplits,
    SplitData,
    archive_limits,
    fetch_source,
    fraction,
    positive,
    register,
)
from tlbench.datasets.images import Size
from tlbench.datasets.splits import grouped_split

BASE_URL = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370"
TRAIN_ZIP = "GTSRB_Final_Training_Images.zip"
TEST_ZIP = "GTSRB_Final_Test_Images.zip"
TEST_GT_ZIP = "GTSRB_Final_Test_GT.zip"
TRAIN_DIR = "GTSRB/Final_Training/Images/"
TEST_DIR = "GTSRB/Final_Test/Images/"
NUM_CLASSES = 43

SIGN_NAMES = (
    "Speed limit (20km/h)",
    "Speed limit (30km/h)",
    "Speed limit (50km/h)",
    "Speed limit (60km/h)",
    "Speed limit (70km/h)",
    "Speed limit (80km/h)",
    "End of speed limit (80km/h)",
    "Speed limit (100km/h)",
    "Speed limit (120km/h)",
    "No passing",
    "No passing for vehicles over 3.5 metric tons",
    "Right-of-way at the next intersection",
    "Priority road",
    "Yield",
    "Stop",
    "No vehicles",
    "Vehicles over 3.5 metric tons prohibited",
    "No entry",
    "General caution",
    "Dangerous curve to the left",
    "Dangerous curve to the right",
    "Double curve",
    "Bumpy road",
    "Slippery road",
    "Road narrows on the right",
    "Road work",
    "Traffic signals",
    "Pedestrians",
    "Children crossing",
    "Bicycles crossing",
    "Beware of ice/snow",
    "Wild animals crossing",
    "End of all speed and passing limits",
    "Turn right ahead",
    "Turn left ahead",
    "Ahead only",
    "Go straight or right",
    "Go straight or left",
    "Keep right",
    "Keep left",
    "Roundabout mandatory",
    "End of no passing",
    "End of no passing by vehicles over 3.5 metric tons",
)


def read_csv(data: bytes, source: str) -> list[dict[str, Any]]:
    """Parse a GTSRB annotation CSV into rows with ``file``, ``class_id`` and ``box``.

    ``box`` is the ROI as fractions of the CSV's Width/Height (x2, y2 exclusive).
    """
    rows = []
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")), delimiter=";")
    for number, row in enumerate(reader, 2):
        try:
            width, height = float(row["Width"]), float(row["Height"])
            box = (
                float(row["Roi.X1"]) / width,
                float(row["Roi.Y1"]) / height,
                float(row["Roi.X2"]) / width,
                float(row["Roi.Y2"]) / height,
            )
            rows.append({"file": row["Filename"], "class_id": int(row["ClassId"]), "box": box})
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}:{number}: cannot parse row {row!r} ({exc})") from exc
    return rows


def _train_rows(zf: ZipReader) -> list[dict[str, Any]]:
    """All training rows with ``member`` and ``group`` (class folder + track)."""
    csvs = sorted(n for n in zf.names if n.startswith(TRAIN_DIR) and n.endswith(".csv"))
    if not csvs:
        raise ValueError(f"{zf.path.name} has no {TRAIN_DIR}000NN/GT-000NN.csv files")
    rows = []
    for name in csvs:
        folder = name.rsplit("/", 1)[0]
        for row in read_csv(zf.read(name), f"{zf.path.name}:{name}"):
            if int(folder.rsplit("/", 1)[1]) != row["class_id"]:
                raise ValueError(f"{name}: ClassId {row['class_id']} in folder {folder}")
            row["member"] = f"{folder}/{row['file']}"
            row["group"] = f"{folder.rsplit('/', 1)[1]}/{row['file'].rsplit('_', 1)[0]}"
            rows.append(row)
    return rows


def _limit(rows: list[dict[str, Any]], limit: int, seed: int, grouped: bool) -> list[dict]:
    """Per class, about ``limit`` rows: whole groups (>= 2) if ``grouped``, else a sample."""
    rng = np.random.default_rng([seed, 0x675])
    by_class: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        by_class[row["class_id"]].append(row)
    kept: list[dict[str, Any]] = []
    for cls in sorted(by_class):
        items = by_class[cls]
        if not grouped:
            order = rng.permutation(len(items))[:limit]
            kept.extend(items[i] for i in sorted(order))
            continue
        groups: dict[str, list[dict]] = defaultdict(list)
        for row in items:
            groups[row["group"]].append(row)
        names = sorted(groups)
        taken: list[dict[str, Any]] = []
        for count, g in enumerate(rng.permutation(len(names)), 1):
            taken.extend(groups[names[g]])
            if len(taken) >= limit and count >= 2:
                break
        kept.extend(sorted(taken, key=lambda r: r["member"]))
    return kept


@register(
    "gtsrb",
    class_count=lambda options: len(options["classes"] or range(NUM_CLASSES)),
    val_fraction=Option(0.1, (float,), "fraction of each class's tracks for validation", fraction),
    roi_crop=Option(False, (bool,), "crop to the ROI box of the CSVs"),
    classes=Option(None, (list,), "only these class ids (0..42)"),
    limit_per_class=Option(
        None, (int,), "about this many images per class (quick tests)", positive
    ),
    class_names=Option("ids", (str,), '"ids" (00000..00042) or "signs" (English names)'),
)
def load_gtsrb(options: dict[str, Any], workdir: Path, seed: int, size: Size) -> RawSplits:
    """Load GTSRB (see module docstring)."""
    if options["class_names"] not in ("ids", "signs"):
        raise ValueError(f"unknown class_names {options['class_names']!r}; valid: ids, signs")
    wanted = options["classes"]
    if wanted is None:
        wanted = list(range(NUM_CLASSES))
    bad = [c for c in wanted if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < 43]
    if bad or len(set(wanted)) != len(wanted):
        raise ValueError(f"gtsrb classes must be distinct class ids 0..42, got {wanted}")
    limit = options["limit_per_class"]
    if limit is not None and limit < 1:
        raise ValueError(f"limit_per_class must be positive, got {limit}")
    index = {c: i for i, c in enumerate(wanted)}
    names = SIGN_NAMES if options["class_names"] == "signs" else [f"{c:05d}" for c in range(43)]
    classes = [names[c] for c in wanted]

    train_zip, train_record = fetch_source(options, f"{BASE_URL}/{TRAIN_ZIP}")
    test_zip, test_record = fetch_source(options, f"{BASE_URL}/{TEST_ZIP}")
    gt_zip, gt_record = fetch_source(options, f"{BASE_URL}/{TEST_GT_ZIP}")
    limits = archive_limits(options)
    train_reader, test_reader = ZipReader(train_zip, limits), ZipReader(test_zip, limits)
    with ZipReader(gt_zip) as gt_reader:
        if "GT-final_test.csv" not in gt_reader:
            raise ValueError(f"{gt_zip.name} has no GT-final_test.csv")
        test_rows = read_csv(gt_reader.read("GT-final_test.csv"), "GT-final_test.csv")
    for row in test_rows:
        row["member"] = TEST_DIR + row["file"]
    train_rows = [r for r in _train_rows(train_reader) if r["class_id"] in index]
    test_rows = [r for r in test_rows if r["class_id"] in index]
    if limit is not None:
        train_rows = _limit(train_rows, limit, seed, grouped=True)
        test_rows = _limit(test_rows, limit, seed, grouped=False)

    skipped: list[dict[str, str]] = []

    def split_of(rows: list[dict[str, Any]], reader: ZipReader, split: str) -> SplitData:
        refs, labels = [], []
        for row in rows:
            if row["member"] not in reader:
                skipped.append(
                    {
                        "file": row["member"],
                        "split": split,
                        "reason": f"listed in the CSV but absent from {reader.path.name}",
                    }
                )
                continue
            box = row["box"] if options["roi_crop"] else None
            read = functools.partial(reader.read, row["member"])
            refs.append(ImageRef(row["member"], read, box))
            labels.append(index[row["class_id"]])
        return SplitData(labels, refs=refs)

    pool = split_of(train_rows, train_reader, "train")
    present = [r for r in train_rows if r["member"] in train_reader]
    # each image's track: validation is carved by track and its standard error counts them
    pool = SplitData(pool.labels, refs=pool.refs, groups=[r["group"] for r in present])
    keep, carved = grouped_split(
        pool.labels,
        pool.groups,
        options["val_fraction"],
        seed,
        class_names=classes,
    )
    return RawSplits(
        classes=classes,
        train=pool.subset(keep),
        val=pool.subset(carved),
        test=split_of(test_rows, test_reader, "test"),
        validation=f"grouped by track, {options['val_fraction']:.0%} of tracks per class",
        test_split="the official test set (GT-final_test.csv)",
        sources=[train_record, test_record, gt_record],
        skipped=skipped,
        cleanup=[train_reader.close, test_reader.close],
    )
