# Helpers of the workflow: wildcard constraints, target lists and input/params
# functions. STUDY (a tlbench.study.matrix.Study) is created in the Snakefile.


from tlbench.datasets.budget import LABEL_PATTERN
from tlbench.datasets.budget import SUFFIX_PATTERN as BUDGET_SUFFIX
from tlbench.datasets.fingerprint import source_fingerprint
from tlbench.study.packing import CHEAP_SCORES, run_group, trains_no_backbone


RESULTS = STUDY.results
# {budget}: '' for the whole training split, else a label budget's suffix (_n10, _f0.25)
RUN_PATTERN = "{dataset}/{backbone}/{strategy}/{augmentation}/seed{seed}{budget}"
TUNING_PATTERN = "{dataset}/{backbone}/{strategy}"
AUTOENCODER = "autoencoder"
#: The report's front section (report/workflow.rst includes it).
VERDICT_FRONT = f"{RESULTS}/tables/verdict.rst"
#: Snakemake wildcard constraint of a label budget's label other than ``all`` (n10, f0.25).
BUDGET_LABEL = LABEL_PATTERN.pattern


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    backbone=r"[A-Za-z0-9_]+",
    strategy=r"[A-Za-z0-9_]+",
    augmentation=r"[A-Za-z0-9_]+",
    seed=r"\d+",
    budget=BUDGET_SUFFIX,


localrules:
    all,
    study_csv,
    general_tables,
    duplicates_table,
    suspicious_runs,
    test_evaluations,
    verdict,
    critical_difference,
    training_curves,
    dataset_curves,
    learning_curves,
    accuracy_heatmaps,
    pareto_front,
    cost_figure,
    best_confusion_matrix,
    reconstructions,
    prediction_grid,
    environment,
    tuning_trials_table,
    tuning_trials_plot,
    transferability_table,
    transferability_check,
    prescreen,


# ---------------------------------------------------------------- runs


def run_of(wildcards):
    """The study's run matching a job's wildcards."""
    return STUDY.run(
        wildcards.dataset,
        wildcards.backbone,
        wildcards.strategy,
        wildcards.augmentation,
        wildcards.seed,
        wildcards.budget,
    )


def run_dirs(runs):
    """Output folders of the given runs."""
    return [STUDY.run_path(run) for run in runs]


def all_run_dirs(wildcards):
    """Every run folder of the study (input of the aggregation); of a prescreened
    block, those of its kept backbones only."""
    return run_dirs(trained_runs())


def dataset_run_dirs(wildcards):
    """The run folders of one dataset."""
    return run_dirs(r for r in trained_runs() if r.dataset == wildcards.dataset)


def autoencoder_run_dirs(wildcards):
    """The run folders of one dataset whose strategy is an autoencoder."""
    return run_dirs(
        r for r in trained_runs() if r.dataset == wildcards.dataset and is_autoencoder(r)
    )


def is_autoencoder(run):
    """Whether a run's strategy is the autoencoder pretraining (it has reconstructions)."""
    return STUDY.config["strategies"][run.strategy]["name"] == AUTOENCODER


def spec_inputs(spec):
    """Folders a (run, features) spec reads: prepared data, pretraining run, feature cache."""
    inputs = {"prepared": spec["dataset"]["prepared"]}
    weights = spec["backbone"]["weights"]
    if isinstance(weights, dict) and "run" in weights:  # not {random: SEED}
        inputs["pretrained"] = weights["run"]
    if "features_cache" in spec:
        inputs["features"] = spec["features_cache"]
    return inputs


def trained_run_input(wildcards):
    """A run needs what its spec reads and, for tuned cells, the search's best values."""
    run = run_of(wildcards)
    inputs = spec_inputs(STUDY.run_spec(run))
    if STUDY.is_tuned(run):  # hyperparameters chosen by the cell's search (rules/tuning.smk)
        cell = STUDY.tuning_path(run.dataset, run.backbone, run.strategy)
        inputs["tuned"] = f"{cell}/best.json"
    return inputs


def trained_run_spec(wildcards):
    """The engine's run spec (a param: changing it reruns the run)."""
    return STUDY.run_spec(run_of(wildcards))


def trained_run_names(wildcards):
    """The run's names, recorded in its metrics.json."""
    return run_of(wildcards).names


def trained_run_group(wildcards):
    """The run's job group: `cheap_runs` for a run that trains no backbone (packed into
    shared SLURM jobs by the profile's group-components), none for the others."""
    return run_group(STUDY, run_of(wildcards))


def trained_run_runtime(wildcards):
    """Time limit (minutes) of a run's job: `resources.packed_runtime` for a run that
    trains no backbone (Snakemake sums it over the runs of a packed job),
    `resources.runtime` for the others."""
    cheap = trains_no_backbone(STUDY, run_of(wildcards))
    return STUDY.config["resources"]["packed_runtime" if cheap else "runtime"]


# ---------------------------------------------------------------- datasets


def prepared_dataset_config(wildcards):
    """Loader config of a dataset (loader, source, options)."""
    return STUDY.dataset_config(wildcards.dataset)


def prepared_dataset_source(wildcards):
    """A fingerprint of the dataset's source (a param: a changed source prepares it again)."""
    return source_fingerprint(STUDY.dataset_config(wildcards.dataset).get("source"))


def prepared_dataset_image_size(wildcards):
    return STUDY.dataset_image_size(wildcards.dataset)


def prepared_dataset_seed(wildcards):
    return STUDY.dataset_seed(wildcards.dataset)


# ---------------------------------------------------------------- pretraining, features


def pretrained_backbone_input(wildcards):
    """The prepared source dataset of a pretraining run."""
    return STUDY.pretrain_spec(wildcards.backbone)["dataset"]["prepared"]


def pretrained_backbone_spec(wildcards):
    return STUDY.pretrain_spec(wildcards.backbone)


def pretrained_backbone_names(wildcards):
    return STUDY.pretrain_names(wildcards.backbone)


def backbone_features_input(wildcards):
    """Feature caches need the prepared dataset and, if pretrained, the backbone's source run."""
    return spec_inputs(STUDY.features_spec(wildcards.dataset, wildcards.backbone))


def backbone_features_spec(wildcards):
    return STUDY.features_spec(wildcards.dataset, wildcards.backbone)


# ---------------------------------------------------------------- tuning (rules/tuning.smk)


def tuning_input(wildcards):
    """A search needs what the cell's runs need: prepared data, pretrained weights, features."""
    return spec_inputs(tuning_spec_of(wildcards))


def tuning_spec_of(wildcards):
    """The run spec the search starts from (a param: changing it reruns the search)."""
    return STUDY.tuning_spec(wildcards.dataset, wildcards.backbone, wildcards.strategy)


def tuning_section_of(wildcards):
    """The strategy's resolved tuning section (a param)."""
    return STUDY.tuning_section(wildcards.strategy)


def tuning_workdir_of(wildcards):
    """Folder of the search's keras-tuner state (kept across failures: resumable)."""
    return STUDY.tuning_workdir(wildcards.dataset, wildcards.backbone, wildcards.strategy)


def tuning_names(wildcards):
    """The searched cell's names (dataset, backbone, strategy)."""
    return dict(wildcards)


def tuning_targets(runs):
    """Trial tables and plots of the searches of ``runs`` (none when nothing is tuned)."""
    targets = []
    for dataset, backbone, strategy in sorted(
        {(r.dataset, r.backbone, r.strategy) for r in runs if STUDY.is_tuned(r)}
    ):
        cell = f"{dataset}/{backbone}/{strategy}"
        targets += [
            f"{RESULTS}/tables/tuning/{cell}.html",
            f"{RESULTS}/figures/tuning/{cell}.png",
        ]
    return targets


# ---------------------------------------------------------------- transferability


def transferability_scores_input(wildcards):
    """A score job reads the feature cache, the prepared labels and, for a backbone
    pretrained by a run, that run (its classifier's outputs: NCE, LEEP)."""
    spec = STUDY.features_spec(wildcards.dataset, wildcards.backbone)
    return {
        **spec_inputs(spec),
        "features": f"{RESULTS}/features/{wildcards.dataset}/{wildcards.backbone}",
    }


def transferability_scores_batch_size(wildcards):
    """Batch size of the source classifier's predictions (the feature cache's)."""
    return STUDY.features_spec(wildcards.dataset, wildcards.backbone)["training"]["batch_size"]


def transferability_score_files(wildcards):
    """The score records of every scored pair, one per label budget its runs train on
    (``{dataset}/{backbone}.json`` for the whole training split, else
    ``{dataset}/{backbone}/{label}.json``)."""
    from tlbench.analysis.transferability.cache import scored_pairs

    files = []
    for d, b in scored_pairs(STUDY):
        for label in sorted({r.budget for r in STUDY.runs if (r.dataset, r.backbone) == (d, b)}):
            name = f"{b}.json" if label == "all" else f"{b}/{label}.json"
            files.append(f"{RESULTS}/transferability/{d}/{name}")
    return files


def transferability_budget_seeds(wildcards):
    """The seeds of a (dataset, backbone, label budget)'s runs: each drew its own subset."""
    return sorted(
        {
            r.seed
            for r in STUDY.runs
            if (r.dataset, r.backbone, r.budget) == (wildcards.dataset, wildcards.backbone, wildcards.label)
        }
    )


def transferability_targets():
    """Score table, tau table and scatter figure (none when no backbone is pretrained)."""
    if not transferability_score_files(None):
        return []
    return [
        f"{RESULTS}/tables/transferability.html",
        f"{RESULTS}/tables/transferability_tau.html",
        f"{RESULTS}/figures/transferability.png",
    ]


# ---------------------------------------------------------------- prescreen


def prescreen_block(wildcards):
    """The prescreened matrix block of a prescreen job's wildcards."""
    block = int(wildcards.block)
    if block not in STUDY.prescreened_blocks:
        raise ValueError(f"matrix[{block}] has no prescreen (prescreened: {STUDY.prescreened_blocks})")
    return block


def prescreen_score_files(wildcards):
    """The score records of every (dataset, backbone) of a prescreened block."""
    pairs = STUDY.prescreen_pairs(prescreen_block(wildcards))
    return [f"{RESULTS}/transferability/{d}/{b}.json" for d, b in pairs]


def prescreen_params(wildcards):
    """The block's prescreen (score, keep): a param, so changing it reruns the choice."""
    return STUDY.prescreen(prescreen_block(wildcards))


def trained_runs():
    """The runs the study trains: every run of a block without prescreen, and of a
    prescreened block those on its kept backbones, read from the block's prescreen
    checkpoint (so: call only from input functions, which Snakemake re-evaluates
    once the checkpoint has run)."""
    from tlbench.analysis.transferability.prescreen import kept_backbones

    trained = set(STUDY.unscreened_runs)
    for block in STUDY.prescreened_blocks:
        table = checkpoints.prescreen.get(block=block).output.csv
        trained.update(STUDY.screened_runs(block, kept_backbones(table)))
    return [r for r in STUDY.runs if r in trained]


def prescreen_targets():
    """The prescreen table of every prescreened block."""
    return [f"{STUDY.prescreen_table(b)}.html" for b in STUDY.prescreened_blocks]


def screened_targets(wildcards):
    """The share of the prescreened blocks in the target list (of the all rule): their kept
    runs, curves and searches."""
    runs = [r for r in trained_runs() if STUDY.prescreen(r.block) is not None]
    return [*run_dirs(runs), *run_figure_targets(runs), *tuning_targets(runs)]


# ---------------------------------------------------------------- targets


def run_figure_targets(runs):
    """Per run training curves: one folder per dataset of ``runs`` (RUN/curves.png inside)."""
    datasets = dict.fromkeys(run.dataset for run in runs)
    return [f"{RESULTS}/figures/runs/{dataset}" for dataset in datasets]


def dataset_figure_targets():
    """Per dataset figures; reconstructions only where autoencoder runs exist."""
    targets = []
    for dataset in STUDY.datasets:
        names = ["curves", "heatmaps", "pareto", "cost", "confusion_matrix", "predictions"]
        if any(is_autoencoder(r) for r in STUDY.runs_of(dataset)):
            names.append("reconstructions")
        targets += [f"{RESULTS}/figures/{dataset}/{name}.png" for name in names]
    return targets


def learning_curve_targets():
    """Per dataset with two or more label budgets (tlbench.datasets.budget): its learning curves."""
    return [
        f"{RESULTS}/figures/{dataset}/learning_curves.png"
        for dataset in STUDY.datasets
        if len({r.budget for r in STUDY.runs_of(dataset)}) > 1
    ]


def table_targets():
    """The study CSV and the tables of the report."""
    return [
        f"{RESULTS}/tables/study.csv",
        *(f"{RESULTS}/tables/{dataset}/general.html" for dataset in STUDY.datasets),
        *(f"{RESULTS}/tables/{dataset}/duplicates.html" for dataset in STUDY.datasets),
        f"{RESULTS}/tables/strategy_ranking.html",
        f"{RESULTS}/tables/suspicious_runs.html",
        f"{RESULTS}/tables/test_evaluations.html",
        f"{RESULTS}/tables/verdict.html",
        VERDICT_FRONT,
        *across_dataset_targets(),
    ]


def across_dataset_targets():
    """The figure across datasets, when two or more datasets share two or more
    strategies (tlbench.analysis.verdict.across compares them pair by pair)."""
    strategies = [{r.strategy for r in STUDY.runs_of(d)} for d in STUDY.datasets]
    if len(strategies) < 2 or len(set.intersection(*strategies)) < 2:
        return []
    return [f"{RESULTS}/figures/critical_difference.png"]


def final_targets():
    """Everything `rule all` asks for; the runs themselves too, so a deleted run is redone
    (those of prescreened blocks: screened_targets, once their prescreen has run)."""
    return [
        *run_dirs(STUDY.unscreened_runs),
        *table_targets(),
        *dataset_figure_targets(),
        *learning_curve_targets(),
        *run_figure_targets(STUDY.unscreened_runs),
        f"{RESULTS}/environment/environment.html",
        *tuning_targets(STUDY.unscreened_runs),
        *prescreen_targets(),
        *transferability_targets(),
        *results_targets(),
    ]


# ---------------------------------------------------------------- results page


def section_block():
    """The study's section of the results page: its `seed_study` or `results_section`
    block (None: the study has none)."""
    return STUDY.seed_study or STUDY.results_section


def section_page(suffix):
    """The study's section file, e.g. docs/results/seed002.md or
    docs/results/transferability.md (suffix .md or .json)."""
    return str(Path(section_block()["page"]).with_suffix(suffix))


def config_files():
    """The study's config file(s), relative to the project folder."""
    given = workflow.overwrite_configfiles or workflow.configfiles  # --configfile replaces config.yaml
    return [os.path.relpath(path) for path in given] or ["config.yaml"]


def section_params():
    """The section's block (`seed_study` or `results_section`), the config file(s) and
    the results folder, for the page."""
    return {**section_block(), "config": ", ".join(config_files()), "results": RESULTS}


def results_page_sections(wildcards):
    """Section summaries (.json) of every measured study: those already in the page's
    folder and this study's own (its .md lies beside each)."""
    folder = Path(section_page(".json")).parent
    return sorted({str(p) for p in folder.glob("*.json")} | {section_page(".json")})


def section_evidence_inputs(wildcards):
    """What a study's evidence is made of: the study CSV, its runs' folders, and the
    transferability tables when the study scores backbones."""
    inputs = {"csv": f"{RESULTS}/tables/study.csv", "runs": all_run_dirs(wildcards)}
    if transferability_score_files(None):
        inputs["transferability"] = f"{RESULTS}/tables/transferability.csv"
        inputs["transferability_tau"] = f"{RESULTS}/tables/transferability_tau.csv"
    return inputs


def evidence_meta():
    """What a section is generated from, kept in its evidence: the config files and
    `--config` values (a rebuild reads the section's settings from them again) and
    whether it ranks strategies across datasets."""
    return {
        "configs": config_files(),
        "cli_config": dict(workflow.config_settings.config),
        "ranking": bool(across_dataset_targets()),
    }


def results_targets():
    """The study's section and the results page (nothing for a study without one)."""
    if not section_block():
        return []
    return [section_page(".md"), "docs/results.md"]


# ---------------------------------------------------------------- the job server

#: The running job server (tlbench.workflow.jobserver), started by onstart on local execution.
JOB_SERVER = {}


def start_job_server():
    """Start the job server (Keras imported once, a forked process per job) when jobs
    run on this machine and ``resources.job_server`` is true (the default)."""
    if workflow.local_exec and STUDY.config["resources"]["job_server"]:
        from tlbench.workflow import jobserver

        JOB_SERVER["process"] = jobserver.start()


def stop_job_server():
    """Stop the job server, if one runs."""
    from tlbench.workflow import jobserver

    jobserver.stop(JOB_SERVER.pop("process", None))
