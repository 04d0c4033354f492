# The self-contained method_labs model: weights, model.json (with the preprocessing),
# label and lab manifests, model.onnx checked against torch, and the model card.


rule export_model:
    input:
        model_dir=path("model_dir", model="method_labs"),
        label_manifest=path("label_manifest"),
        lab_targets=path("lab_targets_selected"),
        table1_json=P["table1_json"],
        shard_index=path("shard_index"),
        train_ids=ids("train", ""),
        val_ids=ids("val", ""),
        test_ids=ids("test", ""),
    output:
        # only the model card goes into the HTML report (the pattern matches MODEL_CARD.md)
        report(
            directory(P["export_dir"]),
            patterns=["{card,MODEL_CARD}.md"],
            caption="../report/model_card.rst",
            category="Model",
        ),
    log:
        log("export_model"),
    benchmark:
        bench_tsv("export_model")
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        n_check=20,  # test records on which model.onnx must equal torch to 1e-5
        synthetic=config["source"]["synthetic"],
    script:
        "../scripts/export_model.py"
