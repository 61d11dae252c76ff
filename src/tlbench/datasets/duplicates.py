"""Duplicates within and across splits and classes, found while preparing.

Each image gets two hashes while ``prepare()`` decodes it, once: **exact**, the
sha256 of the file's bytes (of the pixels for a generated set), and **near**, the
64-bit perceptual hash (``imagehash.phash``) of the decoded image; two images
are near-duplicates when their perceptual hashes differ in at most
``near_distance`` bits (dataset option, default 0: equal hashes). Exact copies
are near copies too.

:func:`find` counts, per pair of splits (``train-train`` ... ``test-test``), the
images of the second split that have a copy in the first (within one split:
the images with another copy there), and the groups of copies that carry more
than one label; it keeps a few examples. The dataset option ``duplicates``
decides: ``warn`` (default) prints and records them; ``error`` fails on any copy
across splits or across classes (copies within one split and class are
recorded only); ``drop`` removes from validation and test the copies of
training images (:func:`drop`) and lists the images under two labels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SPLIT_ORDER = ("train", "val", "test")
ACTIONS = ("warn", "error", "drop")
#: Examples kept per pair of splits, and groups of images under two labels listed.
EXAMPLES, LISTED = 3, 100


@dataclass
class Hashes:
    """The hashes of one split's written images, in order."""

    names: list[str] = field(default_factory=list)
    exact: list[str] = field(default_factory=list)
    near: list[int] = field(default_factory=list)

    def add(self, name: str, picture: Image.Image, data: bytes | None = None) -> None:
        """Hash one image: ``data`` its file's bytes (None: hash the pixels)."""
        # deferred: imagehash imports SciPy and PyWavelets, only when a prepare hashes images
        import imagehash

        raw = data if data is not None else np.asarray(picture).tobytes()
        self.names.append(name)
        self.exact.append(hashlib.sha256(raw).hexdigest())
        bits = imagehash.phash(picture).hash  # 8 x 8 booleans
        self.near.append(int.from_bytes(np.packbits(bits.ravel()).tobytes(), "big"))


def images_fingerprint(hashes: Hashes, labels: np.ndarray, classes: list[str]) -> str:
    """sha256 of a split's images and labels by their exact hashes, in no order: for
    image files their bytes, so the same test images prepared at another size (or in
    another order) give the same fingerprint; for a generated set, its pixels as
    written. ``hashes`` and ``labels`` in the same order."""
    pairs = zip(hashes.exact, labels, strict=True)  # a length mismatch is an error
    lines = sorted(f"{exact}\t{classes[int(y)]}" for exact, y in pairs)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _groups(keys: list[Any]) -> list[list[int]]:
    """Indices grouped by equal key (groups of two or more)."""
    found: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
        found.setdefault(key, []).append(i)
    return [g for g in found.values() if len(g) > 1]


def near_groups(near: np.ndarray, distance: int) -> list[list[int]]:
    """Indices whose hashes are within ``distance`` bits, joined transitively."""
    if distance == 0:
        return _groups(near.tolist())
    parent = list(range(len(near)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(near), 256):
        block = near[start : start + 256]
        bits = np.bitwise_count(block[:, None] ^ near[None, :])
        for a, b in zip(*np.nonzero(bits <= distance), strict=True):
            i, j = start + int(a), int(b)
            if i < j:
                parent[root(j)] = root(i)
    return _groups([root(i) for i in range(len(near))])


def find(
    hashes: dict[str, Hashes],
    labels: dict[str, np.ndarray],
    classes: list[str],
    near_distance: int = 0,
) -> dict[str, Any]:
    """The manifest's ``duplicates`` record (see module docstring)."""
    where = [(s, i) for s in SPLIT_ORDER for i in range(len(hashes[s].names))]
    exact = [h for s in SPLIT_ORDER for h in hashes[s].exact]
    near = np.array([h for s in SPLIT_ORDER for h in hashes[s].near], dtype=np.uint64)
    label = [int(labels[s][i]) for s, i in where]
    record: dict[str, Any] = {
        "exact": "sha256 of the file's bytes (generated images: of the pixels)",
        "near": f"imagehash.phash of the decoded image, at most {near_distance} bit(s) apart",
        "pairs": [],
        "examples": {},
    }
    groups = {"exact": _groups(exact), "near": near_groups(near, near_distance)}
    for a_pos, a in enumerate(SPLIT_ORDER):
        for b in SPLIT_ORDER[a_pos:]:
            pair = f"{a}-{b}"
            row: dict[str, Any] = {"splits": pair}
            for kind, found in groups.items():
                copies = set()
                for group in found:
                    in_a = [g for g in group if where[g][0] == a]
                    in_b = [g for g in group if where[g][0] == b]
                    if a == b and len(in_a) > 1:
                        copies.update(in_a)
                    elif a != b and in_a and in_b:
                        copies.update(in_b)
                        example = {
                            "kind": kind,
                            a: hashes[a].names[where[in_a[0]][1]],
                            b: hashes[b].names[where[in_b[0]][1]],
                        }
                        examples = record["examples"].setdefault(pair, [])
                        if len(examples) < EXAMPLES and not any(
                            e[a] == example[a] and e[b] == example[b] for e in examples
                        ):
                            examples.append(example)
                row[kind] = len(copies)
            record["pairs"].append(row)
    mixed = {k: [g for g in found if len({label[i] for i in g}) > 1] for k, found in groups.items()}
    record["across_classes"] = {kind: len(found) for kind, found in mixed.items()}
    record["two_labels"] = [
        [
            {"file": hashes[where[i][0]].names[where[i][1]], "split": where[i][0]}
            | {"class": classes[label[i]]}
            for i in group
        ]
        for group in mixed["near"][:LISTED]
    ]
    record["train_copies"] = {
        s: sorted(
            {
                where[i][1]
                for group in groups["near"]
                if any(where[j][0] == "train" for j in group)
                for i in group
                if where[i][0] == s
            }
        )
        for s in ("val", "test")
    }
    return record


def across(record: dict[str, Any]) -> dict[str, int]:
    """The copies that count against ``duplicates: error``: per pair of different splits
    (near, which includes exact) and the groups under two labels."""
    counts = {
        r["splits"]: r["near"] for r in record["pairs"] if len(set(r["splits"].split("-"))) == 2
    }
    counts["groups under two labels"] = record["across_classes"]["near"]
    return {k: v for k, v in counts.items() if v}


def summary(record: dict[str, Any]) -> list[str]:
    """Lines for the user: counts per pair of splits with examples, images under two labels."""
    rows = [r for r in record["pairs"] if r["exact"] or r["near"]]
    if not rows and not record["across_classes"]["near"]:
        return []
    lines = [
        "duplicates (images of the second split with a copy in the first; near includes exact): "
        + "; ".join(f"{r['splits']} exact {r['exact']}, near {r['near']}" for r in rows)
    ]
    for pair, examples in record["examples"].items():
        a, b = pair.split("-")
        lines += [f"  e.g. {e[a]} ({a}) = {e[b]} ({b}) [{e['kind']}]" for e in examples[:2]]
    mixed = record["across_classes"]
    if mixed["near"]:
        lines.append(
            f"{mixed['exact']} exact / {mixed['near']} near group(s) of copies carry two labels "
            "(listed in manifest.json duplicates.two_labels), e.g. "
            + ", ".join(
                f"{e['file']} ({e['split']}, {e['class']})" for e in record["two_labels"][0]
            )
        )
    return lines


def drop(
    outdir: Path, record: dict[str, Any], labels: dict[str, np.ndarray], hashes: dict[str, Hashes]
) -> list[dict[str, str]]:
    """Remove from ``outdir``'s val and test arrays the copies of training images (near,
    which includes exact) and their group ids; update ``labels``; return the files
    dropped."""
    dropped = []
    for split in ("val", "test"):
        gone = record["train_copies"][split]
        if not gone:
            continue
        keep = np.setdiff1d(np.arange(len(labels[split])), gone)
        x_path = outdir / f"{split}_x.npy"
        x = np.load(x_path, mmap_mode="r")
        partial = x_path.with_name(f".{split}_x.partial.npy")
        np.save(partial, np.ascontiguousarray(x[keep]))
        del x
        partial.replace(x_path)
        labels[split] = labels[split][keep]
        np.save(outdir / f"{split}_y.npy", labels[split])
        groups_path = outdir / f"{split}_groups.npy"  # images' groups, where declared
        if groups_path.exists():
            np.save(groups_path, np.load(groups_path)[keep])
        dropped += [{"file": hashes[split].names[i], "split": split} for i in gone]
    return dropped
