# Linear probes of clinical knowledge in the frozen ECG encoders (pipeline.evaluation.probe),
# side by side: untrained, the two stage-1 encoders (against tabular data; ECG only) and
# every registered model whose entry says probe=True, all of the default run.
# The synthetic ground truth is read here only, and only when probe.ground_truth asks.

# The encoders probed, by name (the untrained encoder needs no file).
PROBED = {n: stage_dir("", n) for n in [*PRETRAINED, *(m for m in MODELS if MODELS[m].probe)]}


rule probe:
    input:
        **PROBED,
        shard_index=path("shard_index"),
        train_ids=ids("train", ""),
        val_ids=ids("val", ""),
        test_ids=ids("test", ""),
        features=path("features"),
        lab_targets=path("lab_targets"),
        lab_targets_selected=path("lab_targets_selected"),
        lab_target_manifest=path("lab_target_manifest"),
        ground_truth=[path("ground_truth")] if probes_ground_truth(config) else [],
    output:
        md=report(P["probe_md"], caption="../report/probe.rst", category="Probe"),
        csv=report(P["probe_csv"], caption="../report/probe.rst", category="Probe"),
        plot=report(P["probe_plot"], caption="../report/probe.rst", category="Figures"),
    log:
        log("probe"),
    priority: 1  # it waits on every probed encoder: not last and alone on few cores
    conda:
        "../envs/pipeline.yaml"
    threads: config["train"]["num_threads"] or 8  # as training's (runs.smk)
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=0,
    params:
        encoders=list(PROBED),
        probe=section("probe"),
        model=section("model"),
        train=section("train"),
        bootstrap=lambda wildcards: {k: config["evaluate"][k] for k in ("n_bootstrap", "seed")},
    script:
        "../scripts/probe.py"
