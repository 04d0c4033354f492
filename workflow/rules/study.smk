# `snakemake study`: every training stage (pretrain and every registered model) and
# their evaluation, once per seed in study.seeds, then one Table 1 over the seeds
# (results/study/table1.md: per-seed values, mean +- sd, pooled paired differences, gap
# bridged, and the test-fold size an effect of the paper's size needs). Not part of `all`.
#
# Each seed is a run (pipeline/runs.py: every stage's seed overridden) served by the
# pipeline's own rules under results/study/seed<s>/; extraction, shards and splits are the
# default run's files. The seed the default run's stages share (0) re-trains nothing: its
# rows are the default run's own models, so `study` adds two seeds' training.
#
# Ablations and tuning (lambda, E, freezing, objectives, the beyond-the-paper settings) are
# `snakemake sweep` (sweep.smk): named variants, each re-training only what it reaches.

STUDY_ROWS = study_rows(STUDY_RUNS, SUPERVISED)


rule study_table1:
    input:
        evaluations=run_files("evaluation", STUDY_ROWS),
        predictions=run_files("predictions", STUDY_ROWS),
    output:
        md=f"{R}/study/table1.md",
        csv=f"{R}/study/table1.csv",
        json=f"{R}/study/table1.json",
    log:
        log("study_table1"),
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        seeds=config["study"]["seeds"],
        models=list(SUPERVISED),
        evaluate=section("evaluate"),
    script:
        "../scripts/study_table1.py"


rule study:
    input:
        rules.study_table1.output,
