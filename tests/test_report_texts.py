"""The report's texts (report/*.rst) render as Snakemake renders them, for every shipped config.

Snakemake renders each caption with Jinja2 (``snakemake.config``,
``snakemake.wildcards``) and then converts it with docutils; a template error
or an RST warning would break ``snakemake --report``.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "report"
CONFIGS = [ROOT / "config.yaml", *sorted((ROOT / "configs").rglob("*.yaml"))]
WILDCARDS = {"dataset": "digits", "backbone": "cnn_fractal", "strategy": "two_phase",
             "augmentation": "shift", "seed": "1"}  # fmt: skip

jinja2 = pytest.importorskip("jinja2")
docutils_core = pytest.importorskip("docutils.core")


#: What a study's generated page holds where a caption includes one (``.. include::``,
#: e.g. the verdict's front section): a titled section, as the workflow writes it.
GENERATED_INCLUDE = "Generated section\n-----------------\n\nWritten by the workflow.\n"


def render(text: str, config: dict) -> str:
    """Jinja2 as in snakemake.report, then docutils with warnings as errors; returns HTML.

    A caption may include a page the study generates (``.. include:: results/...``);
    docutils runs in a temporary folder where each such page exists, as it does in the
    study's working directory when ``snakemake --report`` runs.
    """
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as snakemake.report
    snakemake = SimpleNamespace(config=config, wildcards=SimpleNamespace(**WILDCARDS))
    rst = env.from_string(text).render(snakemake=snakemake, categories={}, files=[])
    with tempfile.TemporaryDirectory() as workdir:
        for included in re.findall(r"^\.\. include:: (\S+)\s*$", rst, flags=re.M):
            assert not Path(included).is_absolute(), f"include of an absolute path: {included}"
            page = Path(workdir, included)
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(GENERATED_INCLUDE)
        cwd = os.getcwd()
        os.chdir(workdir)
        try:
            parts = docutils_core.publish_parts(
                rst, writer="html", settings_overrides={"halt_level": 2, "report_level": 2}
            )
        finally:
            os.chdir(cwd)
    return parts["html_body"]


def caption_files() -> list[Path]:
    return sorted(REPORT.glob("*.rst"))


def test_every_caption_named_by_the_workflow_exists():
    named = set()
    for path in [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]:
        if path.is_file():
            named |= set(re.findall(r"report/([A-Za-z0-9_]+\.rst)", path.read_text()))
    if not named:
        pytest.skip("no Snakefile/rules in this checkout")
    missing = sorted(n for n in named if not (REPORT / n).is_file())
    assert not missing, f"captions named by the workflow but absent from report/: {missing}"


@pytest.mark.parametrize("config_path", CONFIGS, ids=lambda p: p.name)
@pytest.mark.parametrize("caption", caption_files(), ids=lambda p: p.name)
def test_caption_renders(caption: Path, config_path: Path):
    # Jinja's default Undefined (as in Snakemake) raises on attribute access of a
    # missing key, so optional config keys must go through `default` in the templates.
    config = yaml.safe_load(config_path.read_text())
    html = render(caption.read_text(), config)
    assert len(html) > 200
    assert "{{" not in html and "{%" not in html


def test_captions_quote_the_config():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["training"] = {"epochs": 37, "learning_rate": 0.0042,
                          "early_stopping": {"patience": 7, "monitor": "val_loss"}}  # fmt: skip
    config["seeds"] = [11, 12]
    curves = render((REPORT / "training_curves.rst").read_text(), config)
    assert "37 epochs" in curves and "7 epochs" in curves and "val_loss" in curves
    assert "two_phase" in curves and "seed 1" in curves
    front = render((REPORT / "workflow.rst").read_text(), config)
    assert "at most 37 epochs" in front and "0.0042" in front and "11, 12" in front
    for name in config["datasets"]:
        assert name in front
    general = render((REPORT / "general_table.rst").read_text(), config)
    assert "digits" in general and "11, 12" in general


def test_minimal_config_uses_defaults():
    config = {"datasets": {"d": {"loader": "synthetic", "image_size": 16}},
              "backbones": {"b": {"name": "small_cnn"}}, "strategies": {"s": {"name": "scratch"}},
              "augmentations": {"none": {"name": "none"}},
              "matrix": [{"datasets": ["d"], "backbones": ["b"], "strategies": ["s"],
                          "augmentations": ["none"]}]}  # fmt: skip
    front = render((REPORT / "workflow.rst").read_text(), config)
    assert "at most 10 epochs" in front and "patience" in front


def test_flag_thresholds_match_tables():
    from tlbench.analysis import tables

    for name in ("suspicious_runs.rst", "workflow.rst"):
        text = (REPORT / name).read_text()
        assert f"more than {tables.MAX_TRAIN_TEST_GAP}" in text
        assert f"{tables.CHANCE_FACTOR} × chance" in re.sub(r"\s+", " ", text)


def test_workflow_caption_names_each_kind_of_weights():
    config = yaml.safe_load((ROOT / "configs/measured/transferability.yaml").read_text())
    front = render((REPORT / "workflow.rst").read_text(), config)
    tt = '<tt class="docutils literal">{}</tt>'.format
    random = f"{tt('mnv2_035_random')}: {tt('MobileNetV2')}, fixed random weights drawn from seed 0"
    assert random in front
    assert f"{tt('cnn_fractal')}: {tt('small_cnn')}, weights pretrained in this study on" in front
    assert f"{tt('mnv2_035_224')}: {tt('MobileNetV2')}, weights {tt('imagenet')}" in front
