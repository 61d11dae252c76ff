"""Across datasets (tlbench.analysis.verdict.across): baycomp's Bayesian signed-rank test
per pair of strategies, its region of practical equivalence telling equivalent from
inconclusive, and no headline with fewer datasets than the method needs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tlbench.analysis.verdict import across
from tlbench.report.figures import verdict as verdict_figure
from tlbench.report.pages import results, studies
from tlbench.report.pages import verdict as verdict_page


def ranking(scores: dict[str, list[float]]) -> pd.DataFrame:
    """The strategy ranking's cells: one validation-best cell per strategy and dataset."""
    return pd.DataFrame(
        [
            {
                "dataset": f"d{i}",
                "rank": rank,
                "backbone": "m",
                "strategy": strategy,
                "augmentation": "none",
                "test_accuracy": values[i],
            }  # fmt: skip
            for rank, (strategy, values) in enumerate(scores.items(), start=1)
            for i in range(len(values))
        ]
    )


#: The across-datasets page of the issue: three datasets, fine_tune first on each.
THREE = {
    "fine_tune": [0.930, 0.940, 0.840],
    "two_phase": [0.829, 0.930, 0.830],
    "feature_extraction": [0.744, 0.900, 0.800],
    "scratch": [0.102, 0.630, 0.364],
}


def test_three_datasets_get_a_warning_and_no_headline(tmp_path, monkeypatch):
    """Reproduction: Friedman's chi-square said p = 0.029 on three datasets (exact:
    0.0017) and the front section headlined it; now every pair is inconclusive."""
    result = across.across_datasets(ranking(THREE), margin=0.01)
    assert not result.enough and "3 datasets are too few" in result.warning
    assert set(result.pairs["outcome"]) == {"inconclusive"}
    assert len(result.pairs) == 6 and list(result.ranks.index)[0] == "fine_tune"
    # baycomp alone would say fine_tune beats scratch from these three
    assert result.pairs.set_index(["a", "b"]).loc[("fine_tune", "scratch"), "p_a_better"] > 0.95
    verdicts = pd.DataFrame(columns=["dataset", "selected", "margin"])
    front = verdict_page.front_section(verdicts, result)
    assert "too few" in front and "vs" not in front and "Friedman" not in front
    page = results.to_markdown(studies.across_blocks(ranking(THREE), margin=0.01))
    assert "Warning: 3 datasets are too few" in page and "P(A better)" not in page
    # the figure: the warning alone, no picture of posteriors the method cannot stand behind
    drawn = []
    monkeypatch.setattr(verdict_figure, "posterior_pairs", lambda *a: drawn.append(a))
    verdict_figure.across_figure(result, tmp_path / "across.png")
    assert not drawn and (tmp_path / "across.png").is_file()


def test_enough_datasets_give_the_four_outcomes(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.6, 0.9, size=8)
    scores = {
        "a": list(base + 0.10),
        "b": list(base + 0.10 + rng.uniform(-0.002, 0.002, size=8)),  # within ±0.01 of a
        "c": list(base),  # 0.10 below a everywhere
        "d": list(base + np.where(np.arange(8) % 2, 0.2, -0.2)),  # c ± 0.2: no tendency
    }
    result = across.across_datasets(ranking(scores), margin=0.01)
    assert result.enough and not result.warning
    outcome = result.pairs.set_index(["a", "b"])["outcome"]
    pair = {frozenset(k): (k, v) for k, v in outcome.items()}
    (first, _), said = pair[frozenset(("a", "c"))]
    assert said == ("better" if first == "a" else "worse")
    assert pair[frozenset(("a", "b"))][1] == "equivalent"
    assert pair[frozenset(("c", "d"))][1] == "inconclusive"
    front = verdict_page.front_section(pd.DataFrame(columns=["dataset", "selected"]), result)
    assert "baycomp's Bayesian signed-rank test" in front and ": equivalent" in front
    page = results.to_markdown(studies.across_blocks(ranking(scores), margin=0.01))
    assert "P(A better)" in page and "| equivalent" in page and "Warning" not in page
    png = verdict_figure.across_figure(result, tmp_path / "across.png")
    from PIL import Image

    image = np.asarray(Image.open(png).convert("RGB"))
    blue = (image[..., 2] > 150) & (image[..., 0] < 80)  # the posterior bars are drawn
    assert image.shape[1] > 300 and blue.sum() > 1000


def test_strategies_missing_somewhere_are_left_out_and_named():
    cells = ranking(THREE)
    cells = cells[~((cells["strategy"] == "scratch") & (cells["dataset"] == "d0"))]
    result = across.across_datasets(cells, margin=0.01)
    assert result.left_out == ["scratch"] and "scratch" not in result.scores
    with pytest.raises(ValueError, match=r">= 2 datasets and >= 2 strategies.*\['d0'\]"):
        across.across_datasets(cells[cells["dataset"] == "d0"])
    with pytest.raises(ValueError, match="margin > 0, got 0"):
        across.across_datasets(cells, margin=0)
