# Tuning (tlbench.tuning): a keras-tuner search per (dataset, backbone, strategy)
# whose strategy has a `tuning:` section, on the validation split. Its best
# hyperparameters (best.json) are an input of that cell's final runs, which
# record them as `tuned` (rules/common.smk: trained_run_input). The oracle's
# state lives in <results>/tuning-work/... (not an output, so a failed or killed
# job leaves it and the rerun resumes without redoing finished trials).

rule tuned_hyperparameters:
    input:
        unpack(tuning_input),
    output:
        best=f"{RESULTS}/tuning/{TUNING_PATTERN}/best.json",
        trials=f"{RESULTS}/tuning/{TUNING_PATTERN}/trials.csv",
    params:
        spec=tuning_spec_of,
        tuning=tuning_section_of,
        workdir=tuning_workdir_of,
        names=tuning_names,
    log:
        f"{RESULTS}/logs/tuning/{TUNING_PATTERN}.log",
    threads: STUDY.config["resources"]["threads"]
    resources:
        mem_mb=STUDY.config["resources"]["mem_mb"],
        runtime=STUDY.config["resources"]["runtime"],
        gpu=STUDY.config["resources"]["gpu"],
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/tuned_hyperparameters.py"


rule tuning_trials_table:
    input:
        f"{RESULTS}/tuning/{TUNING_PATTERN}/trials.csv",
    output:
        csv=f"{RESULTS}/tables/tuning/{TUNING_PATTERN}.csv",
        md=f"{RESULTS}/tables/tuning/{TUNING_PATTERN}.md",
        html=report(
            f"{RESULTS}/tables/tuning/{TUNING_PATTERN}.html",
            caption="../report/tuning_trials.rst",
            category="Tuning",
            subcategory="{dataset}",
            labels={
                "dataset": "{dataset}",
                "backbone": "{backbone}",
                "strategy": "{strategy}",
                "item": "all trials (table)",
            },
        ),
    log:
        f"{RESULTS}/logs/tables/tuning/{TUNING_PATTERN}.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/tuning_trials_table.py"


rule tuning_trials_plot:
    input:
        trials=f"{RESULTS}/tuning/{TUNING_PATTERN}/trials.csv",
        best=f"{RESULTS}/tuning/{TUNING_PATTERN}/best.json",
    output:
        report(
            f"{RESULTS}/figures/tuning/{TUNING_PATTERN}.png",
            caption="../report/tuning_plot.rst",
            category="Tuning",
            subcategory="{dataset}",
            labels={
                "dataset": "{dataset}",
                "backbone": "{backbone}",
                "strategy": "{strategy}",
                "item": "score vs hyperparameters (figure)",
            },
        ),
    log:
        f"{RESULTS}/logs/figures/tuning/{TUNING_PATTERN}.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/tuning_trials_plot.py"
