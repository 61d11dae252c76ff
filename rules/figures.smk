# Figures: per run training curves (one job per dataset), per dataset comparisons of all its runs.


rule training_curves:
    # One job per dataset (not per run: a process start each); it reruns when any
    # of the dataset's runs changes and replaces the folder atomically.
    input:
        runs=dataset_run_dirs,
    output:
        report(
            directory(f"{RESULTS}/figures/runs/{{dataset}}"),
            patterns=["{backbone}/{strategy}/{augmentation}/seed{seed}/curves.png"],
            caption="../report/training_curves.rst",
            category="Per run",
            subcategory="{dataset}",
            labels={
                "dataset": "{dataset}",
                "backbone": "{backbone}",
                "strategy": "{strategy}",
                "augmentation": "{augmentation}",
                "seed": "{seed}",
                "figure": "training curves",
            },
        ),
    log:
        f"{RESULTS}/logs/figures/runs/{{dataset}}/curves.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/training_curves.py"


rule dataset_curves:
    input:
        runs=dataset_run_dirs,
    output:
        report(
            f"{RESULTS}/figures/{{dataset}}/curves.png",
            caption="../report/dataset_curves.rst",
            category="Per dataset",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "all runs' curves"},
        ),
    log:
        f"{RESULTS}/logs/figures/{{dataset}}/curves.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/dataset_curves.py"


rule accuracy_heatmaps:
    input:
        study=f"{RESULTS}/tables/study.csv",
    output:
        report(
            f"{RESULTS}/figures/{{dataset}}/heatmaps.png",
            caption="../report/heatmaps.rst",
            category="Per dataset",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "accuracy heatmaps"},
        ),
    log:
        f"{RESULTS}/logs/figures/{{dataset}}/heatmaps.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/accuracy_heatmaps.py"


rule pareto_front:
    input:
        study=f"{RESULTS}/tables/study.csv",
    output:
        report(
            f"{RESULTS}/figures/{{dataset}}/pareto.png",
            caption="../report/pareto.rst",
            category="Per dataset",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "accuracy vs. cost"},
        ),
    log:
        f"{RESULTS}/logs/figures/{{dataset}}/pareto.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/pareto_front.py"


rule cost_figure:
    # each cell's test accuracy against its parameters, FLOPs, training seconds and
    # peak memory, coloured by its verdict outcome (tlbench.report.figures.cost)
    input:
        ranking=f"{RESULTS}/tables/strategy_ranking.csv",
    output:
        report(
            f"{RESULTS}/figures/{{dataset}}/cost.png",
            caption="../report/cost.rst",
            category="Per dataset",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "accuracy against cost, by verdict"},
        ),
    log:
        f"{RESULTS}/logs/figures/{{dataset}}/cost.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/cost_figure.py"


rule best_confusion_matrix:
    input:
        study=f"{RESULTS}/tables/study.csv",
        runs=dataset_run_dirs,
    output:
        report(
            f"{RESULTS}/figures/{{dataset}}/confusion_matrix.png",
            caption="../report/confusion_matrix.rst",
            category="Per dataset",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "confusion matrix of the best run"},
        ),
    log:
        f"{RESULTS}/logs/figures/{{dataset}}/confusion_matrix.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/best_confusion_matrix.py"


rule reconstructions:
    input:
        runs=autoencoder_run_dirs,
    output:
        report(
            f"{RESULTS}/figures/{{dataset}}/reconstructions.png",
            caption="../report/reconstructions.rst",
            category="Autoencoder",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "autoencoder reconstructions"},
        ),
    log:
        f"{RESULTS}/logs/figures/{{dataset}}/reconstructions.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/reconstructions.py"


rule prediction_grid:
    input:
        study=f"{RESULTS}/tables/study.csv",
        prepared=f"{RESULTS}/prepared/{{dataset}}",
        runs=dataset_run_dirs,
    output:
        report(
            f"{RESULTS}/figures/{{dataset}}/predictions.png",
            caption="../report/prediction_grid.rst",
            category="Per dataset",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "test predictions of the best run"},
        ),
    log:
        f"{RESULTS}/logs/figures/{{dataset}}/predictions.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/prediction_grid.py"


rule learning_curves:
    input:
        study=f"{RESULTS}/tables/study.csv",
    output:
        figure=report(
            f"{RESULTS}/figures/{{dataset}}/learning_curves.png",
            caption="../report/learning_curves.rst",
            category="Per dataset",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "learning curves over label budgets"},
        ),
        page=f"{RESULTS}/tables/{{dataset}}/learning_curves.rst",
        csv=f"{RESULTS}/tables/{{dataset}}/learning_curves.csv",
        md=f"{RESULTS}/tables/{{dataset}}/learning_curves.md",
        html=f"{RESULTS}/tables/{{dataset}}/learning_curves.html",
    params:
        verdict=STUDY.config["verdict"],
    log:
        f"{RESULTS}/logs/figures/{{dataset}}/learning_curves.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/learning_curves.py"
