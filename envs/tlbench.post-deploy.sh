#!/usr/bin/env bash
# Runs in the jobs' conda env after Snakemake creates it (envs/tlbench.yaml): the pins of
# requirements-no-deps.txt, without their dependencies (why: that file's comment).
set -euo pipefail
pip install --no-deps keras-hub==0.32.0
