# Results page (only for a config with a `seed_study` or a `results_section` block,
# configs/measured/): the study's evidence (tlbench.analysis.evidence, committed beside its
# section), a seed study's section beside the seed report it reproduces
# (tlbench.report.pages.seeds), another measured study's own section (tlbench.report.pages.studies),
# both from the evidence alone (tlbench.report.pages.sections; `make results-pages` rebuilds
# them from committed evidence), and docs/results.md joining the sections of every measured study.


if section_block():

    rule section_evidence:
        input:
            unpack(section_evidence_inputs),
        output:
            section_page(".evidence.zip"),
        params:
            results=RESULTS,
            meta=evidence_meta(),
        log:
            f"{RESULTS}/logs/results/section_evidence.log",
        conda:
            "../envs/tlbench.yaml"
        script:
            "../scripts/section_evidence.py"


if STUDY.seed_study:

    rule seed_results:
        input:
            evidence=section_page(".evidence.zip"),
        output:
            md=section_page(".md"),
            json=section_page(".json"),
            html=report(
                f"{RESULTS}/results/seed_results.html",
                caption="../report/seed_results.rst",
                category="Seed comparison",
                labels={"page": "the seed report's numbers beside ours"},
            ),
        params:
            study=section_params(),
            verdict=STUDY.config["verdict"],
        log:
            f"{RESULTS}/logs/results/seed_results.log",
        conda:
            "../envs/tlbench.yaml"
        script:
            "../scripts/results_section.py"


if STUDY.results_section:

    rule study_results:
        input:
            evidence=section_page(".evidence.zip"),
        output:
            md=section_page(".md"),
            json=section_page(".json"),
            html=report(
                f"{RESULTS}/results/study_results.html",
                caption="../report/study_results.rst",
                category="Results page",
                labels={"page": "this study's section of the results page"},
            ),
        params:
            study=section_params(),
            verdict=STUDY.config["verdict"],
        log:
            f"{RESULTS}/logs/results/study_results.log",
        conda:
            "../envs/tlbench.yaml"
        script:
            "../scripts/results_section.py"


if section_block():

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
