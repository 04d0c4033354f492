# `snakemake sweep`: every variant of config sweep.variants re-trains only the stages its
# settings reach (pipeline/variants.py) under results/sweep/<variant>/, and is evaluated on
# the default run's test records; results/sweep/sweep.md compares each with the default run
# on the validation fold, where a setting is chosen. Not part of `all`.
#
# As in the study, each rule is the pipeline's own rule (`use rule ... with:`), so a variant
# trains exactly what the default run trains with its settings written in.
import re


wildcard_constraints:
    variant="|".join(map(re.escape, VARIANTS)) or "(?!)",


use rule pretrain as sweep_pretrain with:
    input:
        **swept_inputs("pretrain"),
    output:
        directory(swept(P["pretrain_dir"])),
    log:
        swept(log("pretrain")),
    benchmark:
        swept(bench_tsv("pretrain"))
    params:
        pretrain=swept_pretrain_section,
        checkpoint_dir=swept_checkpoints("pretrain"),


use rule pretrain_ecg_only as sweep_pretrain_ecg_only with:
    input:
        **swept_inputs("pretrain_ecg_only"),
    output:
        directory(swept(P["pretrain_ecg_only_dir"])),
    log:
        swept(log("pretrain_ecg_only")),
    benchmark:
        swept(bench_tsv("pretrain_ecg_only"))
    params:
        pretrain=swept_pretrain_section,
        augment=swept_augment,
        checkpoint_dir=swept_checkpoints("pretrain_ecg_only"),


use rule train_model as sweep_train_model with:
    input:
        unpack(swept_training_inputs),
    output:
        model_dir=directory(swept(P["model_dir"])),
        predictions=swept(P["predictions"]),
    log:
        swept(log("train_{model}")),
    benchmark:
        swept(bench_tsv("train_{model}"))
    params:
        stage=swept_model_section,
        checkpoint_dir=swept_checkpoints(),


use rule evaluate as sweep_evaluate with:
    input:
        **swept_inputs("evaluate"),
    output:
        summary=swept(P["evaluation"]),
        per_label=swept(P["per_label"]),
    log:
        swept(log("evaluate_{model}")),
    benchmark:
        swept(bench_tsv("evaluate_{model}"))


rule sweep_table:
    input:
        model_dirs=sweep_files(P["model_dir"]),
        evaluations=sweep_files(P["evaluation"]),
        predictions=sweep_files(P["predictions"]),
    output:
        md=f"{SWEEP}/sweep.md",
        csv=f"{SWEEP}/sweep.csv",
        json=f"{SWEEP}/sweep.json",
        plot=f"{SWEEP}/sweep.png",
    log:
        log("sweep_table"),
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        runs=sweep_runs(),
        settings={name: dict(v.settings) for name, v in VARIANTS.items()},
        evaluate=section("evaluate"),
    script:
        "../scripts/sweep_table.py"


rule sweep:
    input:
        rules.sweep_table.output,
