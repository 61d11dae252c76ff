# Tables: every run's metrics in one CSV, and the report's tables built from it.


rule study_csv:
    input:
        all_run_dirs,
    output:
        report(
            f"{RESULTS}/tables/study.csv",
            caption="../report/study_csv.rst",
            category="Tables",
            subcategory="All runs",
            labels={"table": "study (CSV, one row per run)"},
        ),
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
        csv=f"{RESULTS}/tables/general.csv",
        html=report(
            f"{RESULTS}/tables/general.html",
            caption="../report/general_table.rst",
            category="Tables",
            subcategory="General table",
            labels={"table": "general (mean ± std over seeds)"},
        ),
    log:
        f"{RESULTS}/logs/tables/general_tables.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/general_tables.py"


rule strategy_ranking:
    input:
        f"{RESULTS}/tables/study.csv",
    output:
        csv=f"{RESULTS}/tables/strategy_ranking.csv",
        html=report(
            f"{RESULTS}/tables/strategy_ranking.html",
            caption="../report/strategy_ranking.rst",
            category="Tables",
            subcategory="Strategy ranking",
            labels={"table": "strategy ranking"},
        ),
    log:
        f"{RESULTS}/logs/tables/strategy_ranking.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/strategy_ranking.py"


rule suspicious_runs:
    input:
        f"{RESULTS}/tables/study.csv",
    output:
        csv=f"{RESULTS}/tables/suspicious_runs.csv",
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
