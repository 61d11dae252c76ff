"""Stratified, grouped and per-class splits."""

from __future__ import annotations

import numpy as np
import pytest

from tlbench.datasets import splits


def test_stratified_split_covers_every_class_and_is_seeded():
    labels = np.array([0] * 50 + [1] * 20 + [2] * 3)
    keep, val = splits.stratified_split(labels, 0.1, seed=0)
    assert len(np.intersect1d(keep, val)) == 0 and len(keep) + len(val) == len(labels)
    assert np.bincount(labels[val]).tolist() == [5, 2, 1]
    assert set(labels[keep]) == {0, 1, 2}
    again = splits.stratified_split(labels, 0.1, seed=0)[1]
    other = splits.stratified_split(labels, 0.1, seed=1)[1]
    assert (again == val).all() and not np.array_equal(other, val)


def test_stratified_split_errors():
    with pytest.raises(ValueError, match="'lonely' has 1 item"):
        splits.stratified_split([0, 0, 1], 0.5, 0, class_names=["many", "lonely"])
    for bad in (0, 1.0, -0.1, "0.1", True):
        with pytest.raises(ValueError, match="fraction"):
            splits.stratified_split([0, 0, 1, 1], bad, 0)


def test_grouped_split_keeps_groups_together():
    rng = np.random.default_rng(0)
    labels, groups = [], []
    for cls in range(4):
        for track in range(int(rng.integers(3, 12))):
            n = int(rng.integers(5, 30))
            labels += [cls] * n
            groups += [f"{cls:05d}_{track:05d}"] * n
    labels, groups = np.array(labels), np.array(groups)
    keep, val = splits.grouped_split(labels, groups, 0.2, seed=3)
    assert len(keep) + len(val) == len(labels)
    assert not set(groups[keep]) & set(groups[val])
    assert set(labels[val]) == set(labels[keep]) == {0, 1, 2, 3}
    for cls in range(4):
        n_groups = len(set(groups[labels == cls]))
        assert len(set(groups[val][labels[val] == cls])) == max(1, round(0.2 * n_groups))


def test_grouped_split_errors():
    with pytest.raises(ValueError, match="group 'g1' holds more than one class"):
        splits.grouped_split([0, 1, 1], ["g1", "g1", "g2"], 0.5, 0)
    with pytest.raises(ValueError, match="class 'b' has 1 group"):
        splits.grouped_split([0, 0, 1, 1], ["a1", "a2", "b1", "b1"], 0.5, 0, class_names=["a", "b"])


def test_take_per_class():
    labels = np.repeat(np.arange(3), 10)
    taken, rest = splits.take_per_class(labels, 4, seed=0)
    assert np.bincount(labels[taken]).tolist() == [4, 4, 4]
    assert len(rest) == 18 and not set(taken) & set(rest)
    with pytest.raises(ValueError, match="train_per_class=10 would leave none"):
        splits.take_per_class(labels, 10, 0)
    with pytest.raises(ValueError, match="positive integer"):
        splits.take_per_class(labels, 0, 0)
