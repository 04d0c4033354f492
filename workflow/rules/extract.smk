# Extraction: source csv(.gz) -> typed parquet (one job per table), then the cohort and
# the per-ECG features, diagnosis labels and lab targets computed from the parquet.
# Rules read only P paths; editing a config section re-runs the rules that take it.


rule convert:
    input:
        # a function: the dataset root (the data prefix's) and relative path (the table's)
        lambda wildcards: source_path(source(wildcards.run), wildcards.table),
    output:
        P["parquet"],
    log:
        log("convert_{table}", RUN),
    benchmark:
        bench_tsv("convert_{table}", RUN)
    wildcard_constraints:
        table="|".join(TABLES),
    priority: PREPARATION  # runs.smk: ahead of every training chain
    conda:
        "../envs/pipeline.yaml"
    threads: data_threads(2)
    resources:
        mem_mb=3000,
        runtime=120,
    params:
        convert=section("convert"),
    script:
        "../scripts/convert.py"


rule extract_cohort:
    input:
        **extract_inputs("cohort"),
    output:
        cohort=P["cohort"],
        dropped=P["cohort_dropped"],
    log:
        log("extract_cohort", RUN),
    benchmark:
        bench_tsv("extract_cohort", RUN)
    priority: PREPARATION  # runs.smk: ahead of every training chain
    conda:
        "../envs/pipeline.yaml"
    threads: data_threads(2)
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        cohort=section("cohort"),
    script:
        "../scripts/extract_cohort.py"


rule extract_features:
    input:
        **extract_inputs("features"),
        cohort=P["cohort"],
    output:
        features=P["features"],
        manifest=P["feature_manifest"],
    log:
        log("extract_features", RUN),
    benchmark:
        bench_tsv("extract_features", RUN)
    priority: PREPARATION  # runs.smk: ahead of every training chain
    conda:
        "../envs/pipeline.yaml"
    threads: data_threads(4)
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        features=section("features"),
    script:
        "../scripts/extract_features.py"


rule extract_labels:
    input:
        **extract_inputs("labels"),
        cohort=P["cohort"],
    output:
        labels=P["labels"],
        manifest=P["label_manifest"],
    log:
        log("extract_labels", RUN),
    benchmark:
        bench_tsv("extract_labels", RUN)
    priority: PREPARATION  # runs.smk: ahead of every training chain
    conda:
        "../envs/pipeline.yaml"
    threads: data_threads(2)
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        labels=section("labels"),
    script:
        "../scripts/extract_labels.py"


rule extract_lab_targets:
    input:
        **extract_inputs("lab_targets"),
        cohort=P["cohort"],
    output:
        targets=P["lab_targets"],
        manifest=P["lab_target_manifest"],
    log:
        log("extract_lab_targets", RUN),
    benchmark:
        bench_tsv("extract_lab_targets", RUN)
    priority: PREPARATION  # runs.smk: ahead of every training chain
    conda:
        "../envs/pipeline.yaml"
    threads: data_threads(4)
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        lab_targets=section("lab_targets"),
    script:
        "../scripts/extract_lab_targets.py"
