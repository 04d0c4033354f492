# Stages 2-3 and the baselines: one rule over the model registry (pipeline/registry.py),
# one script, one training loop (pipeline.train), one job per (run, model) the run
# re-trains (runs.smk). Each job writes P["model_dir"] (model.safetensors, model.json,
# history.tsv) and P["predictions"] (test fold, crop-averaged). Resume checkpoints live in
# results/{run}checkpoints/<model>/ and are not outputs; they are deleted when a stage
# succeeds.


rule train_model:
    input:
        unpack(training_inputs),
    output:
        model_dir=directory(P["model_dir"]),
        predictions=P["predictions"],
    log:
        log("train_{model}", RUN),
    benchmark:
        bench_tsv("train_{model}", RUN)
    wildcard_constraints:
        model="|".join(MODELS),
    priority: training_priority()
    conda:
        "../envs/pipeline.yaml"
    threads: training_threads()  # train.num_threads, or 8 capped at --cores; profiles set it
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=0,  # a SLURM profile sets 1 (set-resources) for a GPU partition
    params:
        kind=lambda wc: wc.model,
        stage=setting("stage"),
        model=setting("model"),
        train=setting("train"),
        checkpoint_dir=checkpoints(),
    script:
        "../scripts/train_supervised.py"
