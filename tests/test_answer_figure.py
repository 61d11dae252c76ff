"""The answer as a picture on the report's first page (tlbench.report.figures.answer):
drawn from the verdict's cells, embedded first in the front section, and on the first
screen when headless Chromium renders it as Snakemake's report renders the section."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from docutils.core import publish_parts
from PIL import Image
from test_set_aside import write_cell

from tlbench.analysis import runs
from tlbench.report.figures.answer import answer_figure
from tlbench.report.pages import verdict as verdict_page

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def front(tmp_path) -> tuple[Path, Path]:
    """A study's verdict written with its figure: (front section, figure)."""
    paths = [
        *write_cell(tmp_path, "m/fine_tune/none", [0.93, 0.92, 0.94], pretrained=True,
                    seconds=100.0),
        *write_cell(tmp_path, "m/feature_extraction/none", [0.92, 0.93, 0.92],
                    pretrained=True, seconds=10.0),
        *write_cell(tmp_path, "cnn/scratch/none", [0.6, 0.62, 0.61], pretrained=False,
                    seconds=50.0),
    ]  # fmt: skip
    out = tmp_path / "out"
    verdict_page.write_verdict(
        runs.collect_runs(paths), out / "verdict", out / "ranking", out / "front.rst",
        reps=200, figure_path=out / "verdict.png",
    )  # fmt: skip
    return out / "front.rst", out / "verdict.png"


def test_the_figure_opens_the_front_section(front):
    rst, png = front
    image = np.asarray(Image.open(png).convert("RGB"))
    assert image.shape[1] > 600 and image.min() < 60 and image.max() > 200  # drawn
    # coloured by outcome: the scratch cell is 'worse' (red) than the chosen cell
    red = (image[..., 0] > 180) & (image[..., 1] < 60) & (image[..., 2] < 60)
    assert red.sum() > 20
    text = rst.read_text()
    assert text.index(".. image:: data:image/png;base64,") < text.index("chosen by mean")
    # Snakemake renders the report's description with docutils' publish_parts
    body = publish_parts(text, writer_name="html")["html_body"]
    assert re.search(r'<img [^>]*src="data:image/png;base64,', body)


def test_the_figure_needs_the_verdicts_fields(tmp_path):
    with pytest.raises(ValueError, match="lacks column.*diff_low"):
        answer_figure(pd.DataFrame({"dataset": ["d"]}), 0.01, tmp_path / "x.png")
    cells = pd.DataFrame([{"dataset": "d", "backbone": "m", "strategy": "s",
                           "augmentation": "none", "rank": 1, "verdict": "maybe",
                           "difference": 0.0, "diff_low": 0.0, "diff_high": 0.0,
                           "train_seconds": 1.0}])  # fmt: skip
    with pytest.raises(ValueError, match=r"outcome\(s\) \['maybe'\] have no colour"):
        answer_figure(cells, 0.01, tmp_path / "x.png")


def test_first_screen_of_the_report_shows_the_figure_in_chromium(front, tmp_path):
    """A Snakemake report whose description includes the front section, as
    report/workflow.rst does, rendered by Snakemake and opened in headless Chromium: the
    figure is decoded, in the first screen's upper half, and the sentences are under it."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent")
    rst, _ = front
    work = tmp_path / "workflow"
    work.mkdir()
    (work / "front.rst").write_text(rst.read_text())
    (work / "description.rst").write_text("tlbench\n=======\n\n.. include:: front.rst\n")
    (work / "Snakefile").write_text(
        'report: "description.rst"\n'
        'rule done:\n    output: report("done.txt", category="X")\n'
        '    shell: "echo done > {output}"\n'
    )
    snakemake = Path(sys.executable).parent / "snakemake"
    for args in (["--cores", "1", "-q"], ["--report", "report.html"]):
        done = subprocess.run([str(snakemake), *args], cwd=work, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    probe = (
        "<script>setTimeout(() => {"
        "const i = document.querySelector('img.tlbench-verdict-figure');"
        "const r = i.getBoundingClientRect();"
        "const p = [...document.querySelectorAll('p')]"
        ".find(e => e.textContent.includes('chosen by mean')).getBoundingClientRect();"
        "document.body.setAttribute('data-probe', "
        "[r.top, r.height, i.naturalWidth, window.innerHeight, p.top].join(','));}, 3000);"
        "</script>"
    )
    report = (work / "report.html").read_text()
    end = report.rindex("</body>")
    page = work / "probe.html"
    page.write_text(report[:end] + probe + report[end:])
    dom = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
         "--window-size=1400,1000", "--virtual-time-budget=10000", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'data-probe="([^"]+)"', dom.stdout)
    assert found, "the report did not render the figure"
    top, height, natural, screen, sentence = map(float, found[1].split(","))
    assert natural > 0 and height > 100  # the PNG decoded and is shown at a readable size
    assert top < screen / 2, (top, screen)  # on the first screen, in its upper half
    assert top + height <= sentence, (top, height, sentence)  # the sentences under it
