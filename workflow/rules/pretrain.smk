# Stage 1: joint-embedding pre-training of the ECG encoder against the tabular data
# (pretrain.objective: Barlow Twins by default, VICReg or CLIP), and its ECG-only twin.
# The resume checkpoint (results/checkpoints/pretrain/last.pt) is deliberately not an
# output: a killed job re-run continues from it; it is deleted when the stage succeeds.


rule pretrain:
    input:
        shard_index=P["shard_index"],
        features=P["features"],
        feature_manifest=P["feature_manifest"],
        labels=P["labels"],
        label_manifest=P["label_manifest"],
        train_ids=ids("train"),
        val_ids=ids("val"),
    output:
        directory(P["pretrain_dir"]),
    log:
        log("pretrain"),
    benchmark:
        bench_tsv("pretrain")
    conda:
        "../envs/pipeline.yaml"
    threads: 8  # capped at --cores locally; profiles set it per cluster
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=0,  # a SLURM profile sets 1 (set-resources) for a GPU partition
    params:
        pretrain=pretrain_section(),
        model=section("model"),
        train=section("train"),
        checkpoint_dir=f"{R}/checkpoints/pretrain",
    script:
        "../scripts/pretrain.py"


# ssl_ecg_only's stage 1: the same rule, settings and objective, with a second augmented
# crop of each ECG as the partner instead of the tabular data (no features read).
use rule pretrain as pretrain_ecg_only with:
    input:
        shard_index=P["shard_index"],
        labels=P["labels"],
        label_manifest=P["label_manifest"],
        train_ids=ids("train"),
        val_ids=ids("val"),
    output:
        directory(P["pretrain_ecg_only_dir"]),
    log:
        log("pretrain_ecg_only"),
    benchmark:
        bench_tsv("pretrain_ecg_only")
    params:
        augment=section("pretrain_ecg_only", "augment"),
        checkpoint_dir=f"{R}/checkpoints/pretrain_ecg_only",
