# Stages 2-3 and the three baselines: one script, one training loop (pipeline.train).
# Each writes P["model_dir"] (model.safetensors, model.json, history.tsv) and P["predictions"]
# (test fold, crop-averaged). Resume checkpoints live in results/checkpoints/<model>/ and
# are not outputs; they are deleted when a stage succeeds.


# stage 2: the stage-1 encoder, first k blocks frozen, new MLP head over diagnoses
rule finetune_diagnoses:
    input:
        shard_index=P["shard_index"],
        train_ids=ids("train"),
        val_ids=ids("val"),
        test_ids=ids("test"),
        targets=P["labels"],
        target_names=P["label_manifest"],
        init_dir=P["pretrain_dir"],
    output:
        model_dir=directory(P["model_dir"].format(model="method_diagnoses")),
        predictions=P["predictions"].format(model="method_diagnoses"),
    log:
        log("finetune_diagnoses"),
    benchmark:
        bench_tsv("finetune_diagnoses")
    conda:
        "../envs/pipeline.yaml"
    threads: 8  # capped at --cores locally; profiles set it per cluster
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=0,  # a SLURM profile sets 1 (set-resources) for a GPU partition
    params:
        kind="method_diagnoses",
        stage=section("finetune_diagnoses"),
        model=section("model"),
        train=section("train"),
        checkpoint_dir=f"{R}/checkpoints/method_diagnoses",
    script:
        "../scripts/train_supervised.py"


# stage 3: a lab-abnormality head on the stage-2 encoder (frozen by default); the
# model file keeps the diagnosis head, so both come from one embedding
rule finetune_labs:
    input:
        shard_index=P["shard_index"],
        train_ids=ids("train"),
        val_ids=ids("val"),
        test_ids=ids("test"),
        targets=P["lab_targets"],
        target_names=P["lab_targets_selected"],
        init_dir=P["model_dir"].format(model="method_diagnoses"),
    output:
        model_dir=directory(P["model_dir"].format(model="method_labs")),
        predictions=P["predictions"].format(model="method_labs"),
    log:
        log("finetune_labs"),
    benchmark:
        bench_tsv("finetune_labs")
    conda:
        "../envs/pipeline.yaml"
    threads: 8  # capped at --cores locally; profiles set it per cluster
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=0,  # a SLURM profile sets 1 (set-resources) for a GPU partition
    params:
        kind="method_labs",
        stage=section("finetune_labs"),
        model=section("model"),
        train=section("train"),
        checkpoint_dir=f"{R}/checkpoints/method_labs",
    script:
        "../scripts/train_supervised.py"


# baseline: S4 from scratch on the ECG alone, diagnoses
rule baseline_signal_only:
    input:
        shard_index=P["shard_index"],
        train_ids=ids("train"),
        val_ids=ids("val"),
        test_ids=ids("test"),
        targets=P["labels"],
        target_names=P["label_manifest"],
    output:
        model_dir=directory(P["model_dir"].format(model="signal_only")),
        predictions=P["predictions"].format(model="signal_only"),
    log:
        log("baseline_signal_only"),
    benchmark:
        bench_tsv("baseline_signal_only")
    conda:
        "../envs/pipeline.yaml"
    threads: 8  # capped at --cores locally; profiles set it per cluster
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=0,  # a SLURM profile sets 1 (set-resources) for a GPU partition
    params:
        kind="signal_only",
        stage=section("baselines"),
        model=section("model"),
        train=section("train"),
        checkpoint_dir=f"{R}/checkpoints/signal_only",
    script:
        "../scripts/train_supervised.py"


# baseline: ECG + all tabular features, late fusion with one linear layer, diagnoses
rule baseline_multimodal_classification:
    input:
        shard_index=P["shard_index"],
        train_ids=ids("train"),
        val_ids=ids("val"),
        test_ids=ids("test"),
        targets=P["labels"],
        target_names=P["label_manifest"],
        features=P["features"],
        feature_manifest=P["feature_manifest"],
    output:
        model_dir=directory(P["model_dir"].format(model="multimodal_classification")),
        predictions=P["predictions"].format(model="multimodal_classification"),
    log:
        log("baseline_multimodal_classification"),
    benchmark:
        bench_tsv("baseline_multimodal_classification")
    conda:
        "../envs/pipeline.yaml"
    threads: 8  # capped at --cores locally; profiles set it per cluster
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=0,  # a SLURM profile sets 1 (set-resources) for a GPU partition
    params:
        kind="multimodal_classification",
        stage=section("baselines"),
        model=section("model"),
        train=section("train"),
        checkpoint_dir=f"{R}/checkpoints/multimodal_classification",
    script:
        "../scripts/train_supervised.py"


# baseline: ECG + routine tabular features (no labs), lab targets
rule baseline_multimodal_labs:
    input:
        shard_index=P["shard_index"],
        train_ids=ids("train"),
        val_ids=ids("val"),
        test_ids=ids("test"),
        targets=P["lab_targets"],
        target_names=P["lab_targets_selected"],
        features=P["features"],
        feature_manifest=P["feature_manifest"],
    output:
        model_dir=directory(P["model_dir"].format(model="multimodal_labs")),
        predictions=P["predictions"].format(model="multimodal_labs"),
    log:
        log("baseline_multimodal_labs"),
    benchmark:
        bench_tsv("baseline_multimodal_labs")
    conda:
        "../envs/pipeline.yaml"
    threads: 8  # capped at --cores locally; profiles set it per cluster
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=0,  # a SLURM profile sets 1 (set-resources) for a GPU partition
    params:
        kind="multimodal_labs",
        stage=section("baselines"),
        model=section("model"),
        train=section("train"),
        checkpoint_dir=f"{R}/checkpoints/multimodal_labs",
    script:
        "../scripts/train_supervised.py"
