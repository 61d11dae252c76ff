"""``hymenoptera``: the ants/bees set of the PyTorch transfer-learning tutorial.

Source: ``hymenoptera_data.zip`` (official URL, or the file of that name in the
``source`` folder), layout ``hymenoptera_data/{train,val}/{ants,bees}/*``.
The tutorial's ``train/`` becomes train + validation (stratified,
``val_fraction`` of each class, seeded) and its ``val/`` the test split.
``train/ants/imageNotFound.gif`` is a real placeholder picture of the original
set; it decodes and is kept as data.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tlbench.datasets.base import (
    Option,
    RawSplits,
    archive_limits,
    class_index,
    fetch_source,
    fraction,
    register,
    split_pool,
)
from tlbench.datasets.folder import make_split, open_tree, scan
from tlbench.datasets.images import Size

URL = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"


@register(
    "hymenoptera",
    class_count=lambda options: 2,
    val_fraction=Option(0.1, (float,), "validation fraction carved from train/", fraction),
)
def load_hymenoptera(options: dict[str, Any], workdir: Path, seed: int, size: Size) -> RawSplits:
    """Load hymenoptera: train/ -> train + val, val/ -> test."""
    path, record = fetch_source(options, URL)
    cleanup: list[Callable[[], None]] = []
    tree = open_tree(path, workdir, cleanup, archive_limits(options))
    try:
        root, found = scan(tree)
        if set(found) != {"train", "val"}:
            raise ValueError(
                f"{path.name}: expected train/ and val/ folders under {root or 'the root'}, "
                f"found {sorted(found)}"
            )
        classes = sorted({cls for items in found.values() for _, cls in items})
        index = class_index(classes)
        pool = make_split(tree, found["train"], index)
        test = make_split(tree, found["val"], index)
        train, val, _ = split_pool(
            pool, seed, val_fraction=options["val_fraction"], classes=classes
        )
    except BaseException:
        for close in cleanup:
            close()
        raise
    return RawSplits(
        classes=classes,
        train=train,
        val=val,
        test=test,
        validation=f"stratified random {options['val_fraction']:.0%} of each class of train/",
        test_split="the official val/ folder",
        sources=[record],
        cleanup=cleanup,
    )
