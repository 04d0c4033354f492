# Patient-grouped folds and the per-stage id lists that training reads. Inputs are kept
# minimal so that editing the splits re-runs only these rules, training and evaluation.


rule make_splits:
    input:
        cohort=P["cohort"],
        labels=P["labels"],
        split_file=[config["splits"]["file"]] if config["splits"]["file"] else [],
    output:
        P["folds"],
    log:
        log("make_splits", RUN),
    benchmark:
        bench_tsv("make_splits", RUN)
    priority: PREPARATION  # runs.smk: ahead of every training chain
    conda:
        "../envs/pipeline.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        splits=section("splits"),
    script:
        "../scripts/make_splits.py"


rule stage_ids:
    input:
        folds=P["folds"],
        cohort=P["cohort"],
        shard_index=P["shard_index"],
    output:
        train=ids("train"),
        val=ids("val"),
        test=ids("test"),
    log:
        log("stage_ids", RUN),
    priority: PREPARATION  # runs.smk: ahead of every training chain
    conda:
        "../envs/pipeline.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        splits=section("splits"),
    script:
        "../scripts/stage_ids.py"


rule label_subset:
    input:
        train=ids("train"),
        folds=P["folds"],
        cohort=P["cohort"],
    output:
        P["train_labelled_ids"],
    log:
        log("label_subset{labels}", RUN),
    wildcard_constraints:
        labels="|".join(re.escape(tag) for _, tag in PLAN.label_sets),
    priority: PREPARATION  # runs.smk: ahead of every training chain
    conda:
        "../envs/pipeline.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        fraction=lambda wildcards: PLAN.label_sets[(wildcards.run, wildcards.labels)],
    script:
        "../scripts/label_subset.py"


rule select_lab_targets:
    input:
        lab_targets=P["lab_targets"],
        val=ids("val"),
        test=ids("test"),
    output:
        P["lab_targets_selected"],
    log:
        log("select_lab_targets", RUN),
    priority: PREPARATION  # runs.smk: ahead of every training chain
    conda:
        "../envs/pipeline.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        min_per_class=section("lab_targets", "min_per_class"),
    script:
        "../scripts/select_lab_targets.py"
