# Stage 1 beyond the ED cohort (config beyond_cohort; off by default): the out-of-cohort
# ECGs with time-matched tabular data, their own shard groups beside the cohort's (the
# cohort's shards are never re-made), an index over both, and the records stage 1 may
# train on under the folds. Turning it on or off re-runs none of the cohort's extraction.


rule extract_beyond:
    input:
        **extract_inputs("beyond"),
        cohort=P["cohort"],
        cohort_features=P["features"],
    output:
        beyond=P["beyond"],
        dropped=P["beyond_dropped"],
    log:
        log("extract_beyond", RUN),
    benchmark:
        bench_tsv("extract_beyond", RUN)
    conda:
        "../envs/pipeline.yaml"
    threads: 4
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        beyond=section("beyond_cohort"),
        features=section("features"),
        cohort=section("cohort"),
    script:
        "../scripts/extract_beyond.py"


# The same script as shard_ecg: it shards the records of any table with study_id, path and
# ecg_time, here the out-of-cohort ones, into beyond_group_{group}.
rule shard_ecg_beyond:
    input:
        cohort=P["beyond"],
        record_list=lambda wildcards: source_path(source(wildcards.run), "record_list"),
    output:
        directory(P["beyond_shard_group"]),
    log:
        log("shard_ecg_beyond_{group}", RUN),
    benchmark:
        bench_tsv("shard_ecg_beyond_{group}", RUN)
    wildcard_constraints:
        group=r"\d+",
    conda:
        "../envs/pipeline.yaml"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        shard=section("shard"),
        ecg_root=lambda wildcards, input: Path(input.record_list).parent,
    script:
        "../scripts/shard_ecg.py"


rule merge_shards_beyond:
    input:
        expand(P["shard_group"], group=range(config["shard"]["n_groups"]), allow_missing=True),
        expand(
            P["beyond_shard_group"], group=range(config["shard"]["n_groups"]), allow_missing=True
        ),
    output:
        index=P["shard_index_beyond"],
        quarantine=P["quarantine_beyond"],
    log:
        log("merge_shards_beyond", RUN),
    conda:
        "../envs/pipeline.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/merge_shards.py"


rule beyond_ids:
    input:
        beyond=P["beyond"],
        folds=P["folds"],
        shard_index=P["shard_index_beyond"],
    output:
        P["beyond_ids"],
    log:
        log("beyond_ids", RUN),
    conda:
        "../envs/pipeline.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        splits=section("splits"),
    script:
        "../scripts/beyond_ids.py"
