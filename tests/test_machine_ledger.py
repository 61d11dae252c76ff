"""The machine's test-split ledger (issue 36): looks at a test split counted per data,
across every study on this machine (tlbench.analysis.lookcount.count_looks), and the earlier
looks a config names (``earlier_test_looks``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from test_results import _run
from test_results import _study as _study_csv

from tlbench.analysis import ledger, lookcount
from tlbench.datasets import make_tiny_prepared
from tlbench.datasets.fingerprint import split_fingerprint
from tlbench.report.pages import results, studies


def _metrics(prepared, seed, started="2026-01-01T00:00:00+00:00", pilot=False):
    """What a finished run hands :func:`ledger.record` (the fields it reads)."""
    spec = {"dataset": {"name": "tiny", "prepared": str(prepared)}, "seed": seed,
            "run": {"dataset": "tiny", "seed": seed}}  # fmt: skip
    return {"spec": spec, "pilot": pilot, "test": None if pilot else {"accuracy": 0.5},
            "attempts": [{"started_utc": started}], "finished_utc": started}  # fmt: skip


def _study(tmp_path, name):
    """A study's results folder with the tiny dataset prepared in it (prepared anew:
    another time, the same images)."""
    results = tmp_path / name
    prepared = make_tiny_prepared(results / "prepared" / "tiny", num_classes=3, size=16)
    return results, prepared


def _df():
    """A one-run study.csv on the tiny dataset."""
    return _study_csv([_run("scratch", 0, 0.5)]).assign(dataset="tiny")


def test_a_second_study_on_the_same_data_shows_the_earlier_looks(tmp_path, machine_ledger):
    """Acceptance (issue 36): study A evaluated the tiny test split twice; study B, on the
    same data prepared again in its own folder (another preparation time), shows A's
    looks beside its own on its section and in its summary; a study on other test
    images does not."""
    a, prepared_a = _study(tmp_path, "a")
    b, prepared_b = _study(tmp_path, "b")
    assert split_fingerprint(prepared_a) == split_fingerprint(prepared_b)
    for seed in (0, 1):
        ledger.record(ledger.ledger_path(a), _metrics(prepared_a, seed))
    ledger.record(ledger.ledger_path(b), _metrics(prepared_b, 0, "2026-02-01T00:00:00+00:00"))
    assert ledger.record(ledger.ledger_path(b), _metrics(prepared_b, 5, pilot=True)) is None
    assert len(ledger.read(machine_ledger)) == 3  # every look, one machine ledger

    counted = lookcount.count_looks(ledger.ledger_path(b), {"tiny": prepared_b})
    assert json.loads(json.dumps(counted)) == counted  # what the evidence stores
    (tiny,) = counted["datasets"]
    assert tiny["run_specs"] == 3 and tiny["evaluations"] == 3
    assert tiny["this_study"] == {"run_specs": 1, "evaluations": 1}
    assert str(ledger.ledger_path(a).resolve()) in tiny["ledgers"]
    assert counted["machine_ledger"] == str(machine_ledger)

    blocks, summary = studies.study_section(
        _df(), {"title": "B", "page": "docs/results/b.md", "config": "b.yaml",
                "results": str(b)}, looks=counted)  # fmt: skip
    text = results.to_markdown(blocks)
    assert "tiny: 3 distinct run specs (3 evaluations; 1 of the run specs by this study" in text
    assert f"the others beside {ledger.ledger_path(a).resolve()}" in text
    assert f"machine's ledger {machine_ledger}" in text and "this machine only" in text
    assert summary["test_evaluations"] == {"tiny": 3}
    assert summary["test_looks"]["datasets"][0]["run_specs"] == 3

    # other test images: none of A's or B's looks
    c = tmp_path / "c"
    prepared_c = make_tiny_prepared(c / "prepared" / "tiny", num_classes=3, size=16, seed=1)
    assert split_fingerprint(prepared_c) != split_fingerprint(prepared_a)
    (other,) = lookcount.count_looks(ledger.ledger_path(c), {"tiny": prepared_c})["datasets"]
    assert other["run_specs"] == 0 and other["ledgers"] == []


def test_looks_written_before_the_machine_ledger_are_folded_in_once(tmp_path, machine_ledger):
    """A study ledger's lines from before this change (no test fingerprint, no machine
    copy) count for a later study on the same data, and counting again adds nothing."""
    a, prepared_a = _study(tmp_path, "a")
    b, prepared_b = _study(tmp_path, "b")
    for seed in (0, 1, 2):
        line = ledger.entry(_metrics(prepared_a, seed)["spec"], evaluation=f"old{seed}")
        del line["test_fingerprint"]
        ledger.append(ledger.ledger_path(a), line)  # the study's ledger only, as before
    # a line of an earlier preparation of A's data (its manifest differs): A's own
    ledger.append(ledger.ledger_path(a), {**line, "evaluation": "older",
                                          "prepared_fingerprint": "gone"})  # fmt: skip
    assert not machine_ledger.exists()
    (own,) = lookcount.count_looks(ledger.ledger_path(a), {"tiny": prepared_a})["datasets"]
    assert own["evaluations"] == 4 and own["prepared_versions"] == 2
    assert len(ledger.read(machine_ledger)) == 4
    lookcount.count_looks(ledger.ledger_path(a), {"tiny": prepared_a})
    assert ledger.fold(ledger.ledger_path(a), {"tiny": prepared_a}) == 0
    assert len(ledger.read(machine_ledger)) == 4  # idempotent
    (later,) = lookcount.count_looks(ledger.ledger_path(b), {"tiny": prepared_b})["datasets"]
    # the three of the same data count for B; the one of a version gone cannot be matched
    assert later["run_specs"] == 3 and later["this_study"]["evaluations"] == 0


def test_the_machine_ledger_is_in_the_user_data_folder_or_tlbench_data_dir(
    tmp_path, monkeypatch, machine_ledger
):
    import platformdirs

    assert ledger.machine_ledger_path() == machine_ledger  # the suite's own folder
    assert not machine_ledger.is_relative_to(platformdirs.user_data_dir("tlbench"))
    monkeypatch.setenv(ledger.DATA_DIR_ENV, str(tmp_path / "x"))
    assert ledger.machine_ledger_path() == tmp_path / "x" / ledger.NAME
    monkeypatch.setenv(ledger.DATA_DIR_ENV, " ")
    with pytest.raises(ValueError, match="TLBENCH_DATA_DIR is set but empty"):
        ledger.machine_ledger_path()
    monkeypatch.delenv(ledger.DATA_DIR_ENV)
    expected = platformdirs.user_data_dir("tlbench")
    assert ledger.machine_ledger_path() == type(machine_ledger)(expected) / ledger.NAME


def test_the_test_fingerprint_is_the_split_content_only(tiny_prepared, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_prepared, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "tlbench_version": "9"}))
    assert split_fingerprint(copy) == split_fingerprint(tiny_prepared)
    y = np.load(copy / "test_y.npy")
    y[0] = (y[0] + 1) % 3
    np.save(copy / "test_y.npy", y)
    assert split_fingerprint(copy) != split_fingerprint(tiny_prepared)
    (copy / "test_x.npy").unlink()
    with pytest.raises(FileNotFoundError, match="no test_x.npy"):
        split_fingerprint(copy)


def test_a_sealed_prepared_folder_says_its_looks_cannot_be_matched(tmp_path):
    results, prepared = _study(tmp_path, "pilot")
    for name in ("test_x.npy", "test_y.npy"):
        (prepared / name).unlink()
    counted = lookcount.count_looks(ledger.ledger_path(results), {"tiny": prepared})
    assert counted["datasets"][0]["test_fingerprint"] is None
    assert "looks by other studies cannot be matched" in lookcount.looks_sentence(counted)


def test_earlier_test_looks_are_added_and_named(tmp_path):
    results_folder, prepared = _study(tmp_path, "a")
    ledger.record(ledger.ledger_path(results_folder), _metrics(prepared, 0))
    counted = lookcount.count_looks(ledger.ledger_path(results_folder), {"tiny": prepared})
    earlier = {"tiny": {"count": 9, "note": "nine pilots scored on test (commit abc)"}}
    blocks, summary = studies.study_section(
        _df(), {"title": "A", "page": "docs/results/a.md", "config": "a.yaml",
                "results": str(results_folder), "earlier_test_looks": earlier},
        looks=counted)  # fmt: skip
    text = results.to_markdown(blocks)
    assert (
        "plus 9 earlier looks that no ledger holds (nine pilots scored on test (commit abc)): "
        "10 in all" in text
    )
    assert summary["test_evaluations"] == {"tiny": 10}
    assert summary["test_looks"]["earlier_test_looks"] == earlier


def _folder(root, colours=((255, 0, 0), (0, 0, 255)), per_class=10):
    """Class folders a/ b/ of small PNGs of different sizes (the folder loader's input)."""
    from PIL import Image

    for c, colour in enumerate(colours):
        folder = root / "ab"[c]
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (12 + i, 12), (colour[0], i * 20, colour[2])).save(folder / f"{i}.png")
    return root


def test_looks_at_the_same_test_images_prepared_at_another_size_are_counted(
    tmp_path, machine_ledger
):
    """A study at 8 px and another at 16 px on the same folder evaluate the same test
    images: their test splits' contents differ (``test_fingerprint``), their images'
    fingerprint (``test_images``: the files' bytes) does not, and the second study counts
    the first one's looks. Other test images (class a's another colour) share none."""
    from tlbench.datasets import prepare

    source = _folder(tmp_path / "source")
    config = {"loader": "folder", "source": str(source)}
    small = prepare(config, tmp_path / "a" / "prepared" / "f", image_size=8, seed=0)
    large = prepare(config, tmp_path / "b" / "prepared" / "f", image_size=16, seed=0)
    assert split_fingerprint(small) != split_fingerprint(large)
    assert ledger.test_images(small) == ledger.test_images(large) is not None
    for seed in (0, 1):
        ledger.record(ledger.ledger_path(tmp_path / "a"), _metrics(small, seed))
    ledger.record(ledger.ledger_path(tmp_path / "b"), _metrics(large, 7))
    (counted,) = lookcount.count_looks(ledger.ledger_path(tmp_path / "b"), {"tiny": large})[
        "datasets"
    ]
    assert counted["run_specs"] == 3 and counted["this_study"]["run_specs"] == 1
    blocks, _ = studies.study_section(
        _df(), {"title": "B", "page": "docs/results/b.md", "config": "b.yaml",
                "results": str(tmp_path / "b")},
        looks=lookcount.count_looks(ledger.ledger_path(tmp_path / "b"), {"tiny": large}),
    )  # fmt: skip
    assert "at any size they were prepared at" in results.to_markdown(blocks)

    # the same folder but class a's images of another red: other test images
    other = _folder(tmp_path / "other", colours=((250, 0, 0), (0, 0, 255)))
    third = prepare({"loader": "folder", "source": str(other)}, tmp_path / "c" / "prepared" / "f",
                    image_size=16, seed=0)  # fmt: skip
    assert ledger.test_images(third) != ledger.test_images(large)
    (none,) = lookcount.count_looks(ledger.ledger_path(tmp_path / "c"), {"tiny": third})["datasets"]
    assert none["run_specs"] == 0
