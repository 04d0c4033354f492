# Stage 1: joint-embedding pre-training of the ECG encoder against the tabular data
# (pretrain.objective: Barlow Twins by default, VICReg or CLIP), and its ECG-only version.
# One job per run that re-trains the stage (runs.smk); the default run's at results/models/.
# The resume checkpoint (results/{run}checkpoints/pretrain/last.pt) is deliberately not an
# output: a killed job re-run continues from it; it is deleted when the stage succeeds.


rule pretrain:
    input:
        **stage1_inputs(tabular=True),  # beyond.smk: the cohort's shards, or with beyond_cohort
        features=data_file("features"),
        feature_manifest=data_file("feature_manifest"),
        labels=data_file("labels"),
        label_manifest=data_file("label_manifest"),
        train_ids=data_file("ids", part="train"),
        val_ids=data_file("ids", part="val"),
    output:
        directory(P["pretrain_dir"]),
    log:
        log("pretrain", RUN),
    benchmark:
        bench_tsv("pretrain", RUN)
    priority: training_priority("pretrain")
    conda:
        "../envs/pipeline.yaml"
    threads: training_threads("pretrain")  # train.num_threads, or 8 capped at --cores
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=0,  # a SLURM profile sets 1 (set-resources) for a GPU partition
    params:
        pretrain=setting("pretrain", "pretrain"),
        model=setting("model", "pretrain"),
        train=setting("train", "pretrain"),
        checkpoint_dir=checkpoints("pretrain"),
    script:
        "../scripts/pretrain.py"


# ssl_ecg_only's stage 1: the same script, settings and objective, with a second augmented
# crop of each ECG as the partner instead of the tabular data (no features read).
rule pretrain_ecg_only:
    input:
        **stage1_inputs(tabular=False),
        labels=data_file("labels"),
        label_manifest=data_file("label_manifest"),
        train_ids=data_file("ids", part="train"),
        val_ids=data_file("ids", part="val"),
    output:
        directory(P["pretrain_ecg_only_dir"]),
    log:
        log("pretrain_ecg_only", RUN),
    benchmark:
        bench_tsv("pretrain_ecg_only", RUN)
    priority: training_priority("pretrain_ecg_only")
    conda:
        "../envs/pipeline.yaml"
    threads: training_threads("pretrain_ecg_only")
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=0,
    params:
        pretrain=setting("pretrain", "pretrain_ecg_only"),
        model=setting("model", "pretrain_ecg_only"),
        train=setting("train", "pretrain_ecg_only"),
        augment=setting("augment", "pretrain_ecg_only"),
        checkpoint_dir=checkpoints("pretrain_ecg_only"),
    script:
        "../scripts/pretrain.py"
