# The verdict: which differences are real (tlbench.analysis.verdict). Per dataset the
# validation-selected cell, its test accuracy with a 95 % interval, each other
# cell better / worse / equivalent / inconclusive, the transfer gain and the
# cheapest cell shown to be as good; the strategy
# ranking (every cell of a dataset on one list with its interval and verdict),
# from the same bootstrap; across datasets (two or more) the strategies compared pair
# by pair (baycomp's Bayesian signed-rank test; figures/critical_difference.png).


rule verdict:
    input:
        study=f"{RESULTS}/tables/study.csv",
        runs=all_run_dirs,
    output:
        csv=f"{RESULTS}/tables/verdict.csv",
        md=f"{RESULTS}/tables/verdict.md",
        html=report(
            f"{RESULTS}/tables/verdict.html",
            caption="../report/verdict.rst",
            category="Tables",
            subcategory="Verdict",
            labels={"table": "verdict (one row per dataset)"},
        ),
        front=VERDICT_FRONT,
        answer=report(
            f"{RESULTS}/figures/verdict.png",
            caption="../report/verdict_figure.rst",
            category="Verdict",
            labels={"figure": "the answer per dataset"},
        ),
        ranking_csv=f"{RESULTS}/tables/strategy_ranking.csv",
        ranking_md=f"{RESULTS}/tables/strategy_ranking.md",
        ranking_html=report(
            f"{RESULTS}/tables/strategy_ranking.html",
            caption="../report/strategy_ranking.rst",
            category="Tables",
            subcategory="Strategy ranking",
            labels={"table": "strategy ranking"},
        ),
    params:
        verdict=STUDY.config["verdict"],
    log:
        f"{RESULTS}/logs/tables/verdict.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/verdict.py"


rule critical_difference:
    input:
        f"{RESULTS}/tables/strategy_ranking.csv",
    output:
        report(
            f"{RESULTS}/figures/critical_difference.png",
            caption="../report/critical_difference.rst",
            category="Across datasets",
            labels={"figure": "strategies across datasets"},
        ),
    params:
        verdict=STUDY.config["verdict"],
    log:
        f"{RESULTS}/logs/figures/critical_difference.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/critical_difference.py"
