# Feature caches: a frozen backbone's features of one dataset, computed once and
# read by every frozen-backbone run without augmentation on that dataset.


rule backbone_features:
    input:
        unpack(backbone_features_input),
    output:
        directory(f"{RESULTS}/features/{{dataset}}/{{backbone}}"),
    params:
        spec=backbone_features_spec,
    log:
        f"{RESULTS}/logs/features/{{dataset}}/{{backbone}}.log",
    # first among the jobs ready at once: every run reading the cache (on SLURM, the
    # packed cheap runs; docs/slurm.md) waits for it
    priority: 1
    threads: STUDY.config["resources"]["threads"]
    resources:
        mem_mb=STUDY.config["resources"]["mem_mb"],
        runtime=STUDY.config["resources"]["runtime"],
        gpu=STUDY.config["resources"]["gpu"],
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/backbone_features.py"
