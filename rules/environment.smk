# Environment: software versions, hardware, git commit and the resolved study config.


rule environment:
    input:
        f"{RESULTS}/tables/study.csv",
    output:
        yaml=f"{RESULTS}/environment/environment.yaml",
        html=report(
            f"{RESULTS}/environment/environment.html",
            caption="../report/environment.rst",
            category="Environment",
            labels={"page": "versions, hardware, git commit, study config"},
        ),
    params:
        config=STUDY.config,
    log:
        f"{RESULTS}/logs/environment.log",
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/environment.py"
