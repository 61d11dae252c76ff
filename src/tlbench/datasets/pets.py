"""``oxford_iiit_pet``: Oxford-IIIT Pet, breed classification.

Sources: ``images.tar.gz`` and ``annotations.tar.gz`` (official URLs, or the
files of those names in the ``source`` folder). The official split is used:
``annotations/trainval.txt`` -> train + validation (stratified,
``val_fraction`` of each breed, seeded), ``annotations/test.txt`` -> test
(lines ``Name classid species breedid``).

A subset of breeds works: only breeds with at least one image present in
``images.tar.gz`` are used (and, with ``breeds: [...]``, only those). Classes
are the breed names (``Abyssinian``, ``american_bulldog``, ...; cats are
capitalised in the official names), in the order of the official class ids.
A listed image of a used breed that is missing from the archive is recorded as
skipped. Some files are not what their ``.jpg`` name says
(``Abyssinian_34.jpg`` is a GIF, ``Abyssinian_5.jpg`` a PNG with alpha); the
decoder goes by content, so they load.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from tlbench.datasets.archives import Limits, iter_tar_files, read_regular, safe_extract
from tlbench.datasets.base import (
    ImageRef,
    Option,
    RawSplits,
    SplitData,
    archive_limits,
    fetch_source,
    fraction,
    register,
    split_pool,
)
from tlbench.datasets.images import Size

BASE_URL = "https://thor.robots.ox.ac.uk/datasets/pets"
LISTS = ("annotations/trainval.txt", "annotations/test.txt")


def parse_list(text: str, source: str) -> list[tuple[str, int, str]]:
    """Parse a Pets list file into ``[(image name, class id, breed name)]``."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit() or "_" not in parts[0]:
            raise ValueError(f"{source}:{number}: cannot parse {line!r}")
        entries.append((parts[0], int(parts[1]), parts[0].rsplit("_", 1)[0]))
    return entries


def _read_bytes(limits: Limits, path: Path) -> bytes:
    return read_regular(path, limits)


@register(
    "oxford_iiit_pet",
    class_count=lambda options: len(options["breeds"]) if options["breeds"] else None,
    breeds=Option(None, (list,), "only these breeds (names as in the official lists)"),
    val_fraction=Option(0.1, (float,), "validation fraction carved from trainval", fraction),
)
def load_pets(options: dict[str, Any], workdir: Path, seed: int, size: Size) -> RawSplits:
    """Load Oxford-IIIT Pet (see module docstring)."""
    limits = archive_limits(options)
    images_tar, images_record = fetch_source(options, f"{BASE_URL}/images.tar.gz")
    annotations_tar, annotations_record = fetch_source(options, f"{BASE_URL}/annotations.tar.gz")
    texts = {n: b.decode() for n, b in iter_tar_files(annotations_tar) if n in LISTS}
    missing_lists = [n for n in LISTS if n not in texts]
    if missing_lists:
        raise ValueError(f"{annotations_tar.name} lacks {missing_lists}")
    lists = {n: parse_list(texts[n], n) for n in LISTS}
    extracted = safe_extract(
        images_tar,
        workdir / "pets",
        include=lambda n: n.startswith("images/") and n.lower().endswith(".jpg"),
        limits=limits,
    )
    present = {p.stem: p for p in (extracted / "images").glob("*.jpg")}
    class_ids = {breed: cid for entries in lists.values() for _, cid, breed in entries}
    breeds_present = {breed for name, _, breed in sum(lists.values(), []) if name in present}
    wanted = options["breeds"]
    if wanted is not None:
        unknown = [b for b in wanted if b not in class_ids]
        if unknown:
            raise ValueError(
                f"unknown breed(s) {unknown}; valid breeds: {', '.join(sorted(class_ids))}"
            )
        absent = [b for b in wanted if b not in breeds_present]
        if absent:
            raise ValueError(
                f"breed(s) {absent} have no images in {images_tar.name}; breeds present: "
                + ", ".join(sorted(breeds_present))
            )
        breeds_present = set(wanted)
    classes = sorted(breeds_present, key=lambda b: (class_ids[b], b))
    index = {b: i for i, b in enumerate(classes)}
    skipped: list[dict[str, str]] = []
    splits: dict[str, SplitData] = {}
    for list_name, key in zip(LISTS, ("trainval", "test"), strict=True):
        refs, labels = [], []
        for name, _, breed in lists[list_name]:
            if breed not in index:
                continue
            if name not in present:
                skipped.append(
                    {
                        "file": f"images/{name}.jpg",
                        "split": key,
                        "reason": f"listed in {list_name} but absent from {images_tar.name}",
                    }
                )
                continue
            refs.append(
                ImageRef(
                    f"images/{name}.jpg", functools.partial(_read_bytes, limits, present[name])
                )
            )
            labels.append(index[breed])
        splits[key] = SplitData(labels, refs=refs)
    train, val, _ = split_pool(
        splits["trainval"], seed, val_fraction=options["val_fraction"], classes=classes
    )
    return RawSplits(
        classes=classes,
        train=train,
        val=val,
        test=splits["test"],
        validation=f"stratified random {options['val_fraction']:.0%} of each breed of trainval.txt",
        test_split="the official test.txt",
        sources=[images_record, annotations_record],
        skipped=skipped,
    )
