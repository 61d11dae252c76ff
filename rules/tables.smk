# Tables: every run's metrics in one CSV, and the report's tables built from it.
# Each table is written as CSV, Markdown and HTML (tlbench.report.render.write_table).


rule study_csv:
    input:
        all_run_dirs,
    output:
        csv=report(
            f"{RESULTS}/tables/study.csv",
            caption="../report/study_csv.rst",
            category="Tables",
            subcategory="All runs",
            labels={"table": "study (one row per run)"},
        ),
        md=f"{RESULTS}/tables/study.md",
        html=f"{RESULTS}/tables/study.html",
    params:
        # what chooses (tlbench.analysis.selection), in the table every choice reads
        selection=STUDY.config["selection"]["metric"],
    log:
        f"{RESULTS}/logs/tables/study_csv.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/study_csv.py"


rule general_tables:
    input:
        f"{RESULTS}/tables/study.csv",
    output:
        csv=f"{RESULTS}/tables/{{dataset}}/general.csv",
        md=f"{RESULTS}/tables/{{dataset}}/general.md",
        html=report(
            f"{RESULTS}/tables/{{dataset}}/general.html",
            caption="../report/general_table.rst",
            category="Tables",
            subcategory="General table",
            labels={"dataset": "{dataset}", "table": "general (mean ± sd over seeds)"},
        ),
    log:
        f"{RESULTS}/logs/tables/{{dataset}}/general_tables.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/general_tables.py"


rule suspicious_runs:
    input:
        f"{RESULTS}/tables/study.csv",
    output:
        csv=f"{RESULTS}/tables/suspicious_runs.csv",
        md=f"{RESULTS}/tables/suspicious_runs.md",
        html=report(
            f"{RESULTS}/tables/suspicious_runs.html",
            caption="../report/suspicious_runs.rst",
            category="Tables",
            subcategory="Suspicious runs",
            labels={"table": "suspicious runs"},
        ),
    log:
        f"{RESULTS}/logs/tables/suspicious_runs.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/suspicious_runs.py"


rule test_evaluations:
    input:
        all_run_dirs,
    output:
        csv=f"{RESULTS}/tables/test_evaluations.csv",
        md=f"{RESULTS}/tables/test_evaluations.md",
        html=report(
            f"{RESULTS}/tables/test_evaluations.html",
            caption="../report/test_evaluations.rst",
            category="Tables",
            subcategory="Test-split ledger",
            labels={"table": "looks at the test split"},
        ),
    params:
        ledger=STUDY.ledger_path,
        datasets=STUDY.datasets,
    log:
        f"{RESULTS}/logs/tables/test_evaluations.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/test_evaluations.py"


rule duplicates_table:
    input:
        f"{RESULTS}/prepared/{{dataset}}",
    output:
        csv=f"{RESULTS}/tables/{{dataset}}/duplicates.csv",
        md=f"{RESULTS}/tables/{{dataset}}/duplicates.md",
        html=report(
            f"{RESULTS}/tables/{{dataset}}/duplicates.html",
            caption="../report/duplicates_table.rst",
            category="Per dataset",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "duplicates"},
        ),
    log:
        f"{RESULTS}/logs/tables/{{dataset}}/duplicates_table.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/duplicates_table.py"
