# Results page (only for a config with a `seed_study` block, configs/measured/):
# the study's section beside the seed report it reproduces, and docs/results.md
# joining the sections of every measured seed study (tlbench.results).


if STUDY.seed_study:

    rule seed_results:
        input:
            csv=f"{RESULTS}/tables/study.csv",
            runs=all_run_dirs,
        output:
            md=seed_page(".md"),
            json=seed_page(".json"),
            html=report(
                f"{RESULTS}/results/seed_results.html",
                caption="../report/seed_results.rst",
                category="Seed comparison",
                labels={"page": "the seed report's numbers beside ours"},
            ),
        params:
            study=seed_study_params(),
        log:
            f"{RESULTS}/logs/results/seed_results.log",
        conda:
            "../envs/tlbench.yaml"
        script:
            "../scripts/seed_results.py"

    rule results_page:
        input:
            results_page_sections,
        output:
            "docs/results.md",
        log:
            f"{RESULTS}/logs/results/results_page.log",
        conda:
            "../envs/tlbench.yaml"
        script:
            "../scripts/results_page.py"
