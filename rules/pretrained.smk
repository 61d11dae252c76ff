# Pretrained backbones: a supervised source run (strategy scratch) of a backbone on
# its pretraining dataset; its model is the weight source of the backbone's runs.


rule pretrained_backbone:
    input:
        prepared=pretrained_backbone_input,
    output:
        directory(f"{RESULTS}/pretrained/{{backbone}}"),
    params:
        spec=pretrained_backbone_spec,
        names=pretrained_backbone_names,
    log:
        f"{RESULTS}/logs/pretrained/{{backbone}}.log",
    threads: STUDY.config["resources"]["threads"]
    resources:
        mem_mb=STUDY.config["resources"]["mem_mb"],
        runtime=STUDY.config["resources"]["runtime"],
        gpu=STUDY.config["resources"]["gpu"],
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/trained_run.py"
