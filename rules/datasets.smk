# Prepared datasets: decoded, resized, split once per dataset (its config carries its size).


rule prepared_dataset:
    output:
        directory(f"{RESULTS}/prepared/{{dataset}}"),
    params:
        config=prepared_dataset_config,
        # a fingerprint of the source (files' paths, sizes, mtimes; an archive's sha256):
        # adding, moving or editing an image prepares the dataset again
        source=prepared_dataset_source,
        image_size=prepared_dataset_image_size,
        seed=prepared_dataset_seed,
    log:
        f"{RESULTS}/logs/prepared/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=STUDY.config["resources"]["mem_mb"],
        runtime=STUDY.config["resources"]["runtime"],
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/prepared_dataset.py"
