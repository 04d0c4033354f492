# ECG sharding: one job per shard group (study_id % n_groups), then one merge.
# Shards depend on the cohort and the records only, never on the splits.


rule shard_ecg:
    input:
        cohort=P["cohort"],
        # the record list's source file, so a synthetic cohort is generated first
        record_list=lambda wildcards: source_path(source(wildcards.run), "record_list"),
    output:
        directory(P["shard_group"]),
    log:
        log("shard_ecg_{group}", RUN),
    benchmark:
        bench_tsv("shard_ecg_{group}", RUN)
    wildcard_constraints:
        group=r"\d+",
    priority: PREPARATION  # runs.smk: ahead of every training chain
    conda:
        "../envs/pipeline.yaml"
    threads: data_threads(4)
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        shard=section("shard"),
        # the ECG root is where record_list.csv lives (record paths are relative to it)
        ecg_root=lambda wildcards, input: Path(input.record_list).parent,
    script:
        "../scripts/shard_ecg.py"


rule merge_shards:
    input:
        expand(P["shard_group"], group=range(config["shard"]["n_groups"]), allow_missing=True),
    output:
        index=P["shard_index"],
        quarantine=P["quarantine"],
    log:
        log("merge_shards", RUN),
    benchmark:
        bench_tsv("merge_shards", RUN)
    priority: PREPARATION  # runs.smk: ahead of every training chain
    conda:
        "../envs/pipeline.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/merge_shards.py"
