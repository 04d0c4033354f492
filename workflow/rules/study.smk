# `snakemake study`: every training stage (pretrain and every registered model) and
# their evaluation, repeated for each seed in study.seeds, then one Table 1 over the seeds
# (results/study/table1.md: per-seed values, mean +- sd, pooled paired differences, gap
# bridged, and the test-fold size an effect of the paper's size needs). Not part of `all`.
#
# Each study rule is the pipeline's own rule (`use rule ... with:`), so the study trains
# exactly what the default run trains. Only the per-seed subtrees (SEEDED) move under
# results/study/seed{seed}/; extraction, shards and splits are the default run's files, so
# the study never re-runs them, and a seed's stages get every stage seed set to {seed}.
# The seed the default run's stages share (0) is not trained again: its rows are the default
# run's own models (DEFAULT_SEED in common_study.smk), so `study` adds two seeds' training.
#
# Ablations and tuning (lambda, E, freezing, objectives, the beyond-the-paper settings) are
# `snakemake sweep` (sweep.smk): named variants, each re-training only what it reaches.


wildcard_constraints:
    seed=r"\d+",


use rule pretrain as study_pretrain with:
    input:
        **seeded_inputs("pretrain"),
    output:
        directory(seeded(P["pretrain_dir"])),
    log:
        seeded(log("pretrain")),
    benchmark:
        seeded_benchmark("pretrain")
    params:
        pretrain=seeded_section("pretrain"),
        checkpoint_dir=seeded_checkpoints("pretrain"),


use rule pretrain_ecg_only as study_pretrain_ecg_only with:
    input:
        **seeded_inputs("pretrain_ecg_only"),
    output:
        directory(seeded(P["pretrain_ecg_only_dir"])),
    log:
        seeded(log("pretrain_ecg_only")),
    benchmark:
        seeded_benchmark("pretrain_ecg_only")
    params:
        pretrain=seeded_section("pretrain"),
        checkpoint_dir=seeded_checkpoints("pretrain_ecg_only"),


use rule train_model as study_train_model with:
    input:
        unpack(seeded_training_inputs),
    output:
        model_dir=directory(seeded(P["model_dir"])),
        predictions=seeded(P["predictions"]),
    log:
        seeded(log("train_{model}")),
    benchmark:
        seeded_benchmark("train_model")
    params:
        stage=seeded_model_section,
        checkpoint_dir=seeded_checkpoints(),


use rule evaluate as study_evaluate with:
    input:
        **seeded_inputs("evaluate"),
    output:
        summary=seeded(P["evaluation"]),
        per_label=seeded(P["per_label"]),
    log:
        seeded(log("evaluate_{model}")),
    benchmark:
        seeded_benchmark("evaluate")


rule study_table1:
    input:
        evaluations=study_files(P["evaluation"]),
        predictions=study_files(P["predictions"]),
    output:
        md=f"{STUDY}/table1.md",
        csv=f"{STUDY}/table1.csv",
        json=f"{STUDY}/table1.json",
    log:
        log("study_table1"),
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        seeds=SEEDS,
        models=list(SUPERVISED),
        evaluate=section("evaluate"),
    script:
        "../scripts/study_table1.py"


rule study:
    input:
        rules.study_table1.output,
