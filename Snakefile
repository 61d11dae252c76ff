# tlbench: a benchmark study of transfer learning for image classification.
# The study (config.yaml or --configfile) is validated against
# src/tlbench/study/schemas/config.schema.yaml and expanded into runs by tlbench.study;
# rules/ holds one file per kind of result, scripts/ the thin entry points.
import copy
import os
from pathlib import Path

from snakemake.utils import min_version, update_config

from tlbench.study.load import check_config_files, load_study, typed_cli_values


min_version("9.0")


configfile: "config.yaml"


# A study given with --configfile replaces config.yaml instead of being merged
# into it; --config values extend the study, nested ones typed as in YAML.
if workflow.overwrite_configfiles:
    config.clear()
    config.update(copy.deepcopy(workflow.config_settings.overwrite_config))
update_config(config, typed_cli_values(workflow.config_settings.config))


# Validation (errors name the key path and the allowed values) + matrix expansion;
# the main process also validates every dataset's options and every run spec
# (jobs started by it, e.g. on SLURM, skip that: it imports Keras).
check_config_files(workflow.configfiles)  # no YAML aliases (tlbench.core.yaml_files)
STUDY = load_study(config, check_specs=workflow.is_main_process)


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/datasets.smk"
include: "rules/pretrained.smk"
include: "rules/features.smk"
include: "rules/transferability.smk"
include: "rules/tuning.smk"
include: "rules/runs.smk"
include: "rules/tables.smk"
include: "rules/verdict.smk"
include: "rules/figures.smk"
include: "rules/environment.smk"
include: "rules/results.smk"


# One process imports Keras for every job of a local run (tlbench.workflow.jobserver).
onstart:
    start_job_server()


onsuccess:
    stop_job_server()


onerror:
    stop_job_server()


rule all:
    input:
        final_targets(),
        screened_targets,
