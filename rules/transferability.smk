# Transferability scores (tlbench.analysis.transferability): every pretrained backbone of the
# study scored on each dataset from its frozen-feature cache (rules/features.smk) and,
# for a backbone pretrained by a run (rules/pretrained.smk), from that run's classifier
# on the train images (NCE, LEEP); the scores checked against the accuracies the
# study's runs measured. A score job is cheap: on SLURM the profile packs score jobs
# into shared jobs (group `cheap_scores`, docs/slurm.md "Packed jobs").


rule transferability_scores:
    input:
        unpack(transferability_scores_input),
    output:
        f"{RESULTS}/transferability/{{dataset}}/{{backbone}}.json",
    params:
        batch_size=transferability_scores_batch_size,
        budget="all",
    log:
        f"{RESULTS}/logs/transferability/{{dataset}}/{{backbone}}.log",
    group:
        CHEAP_SCORES
    threads: STUDY.config["resources"]["threads"]
    resources:
        mem_mb=STUDY.config["resources"]["mem_mb"],
        runtime=STUDY.config["resources"]["packed_runtime"],
        pack_slot=1,
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/transferability_scores.py"


# The same scores on a label budget's training images (tlbench.datasets.budget), for the
# tau of that budget's runs.
rule transferability_scores_budget:
    input:
        unpack(transferability_scores_input),
    output:
        f"{RESULTS}/transferability/{{dataset}}/{{backbone}}/{{label}}.json",
    wildcard_constraints:
        label=BUDGET_LABEL,
    params:
        batch_size=transferability_scores_batch_size,
        budget=lambda wildcards: wildcards.label,
        seeds=transferability_budget_seeds,
    log:
        f"{RESULTS}/logs/transferability/{{dataset}}/{{backbone}}/{{label}}.log",
    threads: STUDY.config["resources"]["threads"]
    resources:
        mem_mb=STUDY.config["resources"]["mem_mb"],
        runtime=STUDY.config["resources"]["runtime"],
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/transferability_scores.py"


rule transferability_table:
    input:
        transferability_score_files,
    output:
        csv=f"{RESULTS}/tables/transferability.csv",
        md=f"{RESULTS}/tables/transferability.md",
        html=report(
            f"{RESULTS}/tables/transferability.html",
            caption="../report/transferability.rst",
            category="Transferability",
            subcategory="Scores",
            labels={"table": "transferability scores"},
        ),
    log:
        f"{RESULTS}/logs/tables/transferability.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/transferability_table.py"


rule transferability_check:
    input:
        scores=f"{RESULTS}/tables/transferability.csv",
        study=f"{RESULTS}/tables/study.csv",
    output:
        csv=f"{RESULTS}/tables/transferability_tau.csv",
        md=f"{RESULTS}/tables/transferability_tau.md",
        html=report(
            f"{RESULTS}/tables/transferability_tau.html",
            caption="../report/transferability_tau.rst",
            category="Transferability",
            subcategory="Scores vs. measured accuracy",
            labels={"table": "weighted Kendall tau"},
        ),
        figure=report(
            f"{RESULTS}/figures/transferability.png",
            caption="../report/transferability_scatter.rst",
            category="Transferability",
            subcategory="Scores vs. measured accuracy",
            labels={"figure": "scores vs. accuracy"},
        ),
    log:
        f"{RESULTS}/logs/tables/transferability_tau.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/transferability_check.py"


# Prescreen (a matrix block's `prescreen: {score, keep}`): the block's backbones ranked
# by a score of their frozen features (train and val splits only), the `keep` best per
# dataset kept. A checkpoint: the block's runs are expanded from its table
# (trained_runs in rules/common.smk), so pruned backbones are never trained.


checkpoint prescreen:
    input:
        prescreen_score_files,
    output:
        csv=f"{RESULTS}/tables/prescreen_block{{block}}.csv",
        md=f"{RESULTS}/tables/prescreen_block{{block}}.md",
        html=report(
            f"{RESULTS}/tables/prescreen_block{{block}}.html",
            caption="../report/prescreen.rst",
            category="Transferability",
            subcategory="Prescreen",
            labels={"table": "prescreen of matrix block {block}"},
        ),
    params:
        prescreen=prescreen_params,
    wildcard_constraints:
        block=r"\d+",
    log:
        f"{RESULTS}/logs/tables/prescreen_block{{block}}.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/prescreen.py"
