# Trained runs: one cell of the study matrix, trained and evaluated by the engine.
# The run spec is a param, so changing any of a run's settings reruns it.
# Runs that train no backbone are in the job group `cheap_runs` (tlbench.study.packing):
# on SLURM the profile packs them into shared jobs (docs/slurm.md, "Packed jobs").


rule trained_run:
    input:
        unpack(trained_run_input),
    output:
        directory(f"{RESULTS}/runs/{RUN_PATTERN}"),
    params:
        spec=trained_run_spec,
        names=trained_run_names,
    log:
        f"{RESULTS}/logs/runs/{RUN_PATTERN}.log",
    group:
        trained_run_group
    threads: STUDY.config["resources"]["threads"]
    resources:
        mem_mb=STUDY.config["resources"]["mem_mb"],
        runtime=trained_run_runtime,
        gpu=STUDY.config["resources"]["gpu"],
        pack_slot=1,
    conda:
        "../envs/tlbench.yaml"
    script:
        "../scripts/trained_run.py"
