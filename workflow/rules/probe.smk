# Linear probes of clinical knowledge in the frozen ECG encoders (pipeline.evaluation.probe),
# side by side: untrained, the two stage-1 encoders (against tabular data; ECG only) and
# every registered model whose entry says probe=True, all of the default run: one job per
# encoder (results/probe/<encoder>.npz), then one job for the table and the heatmap.
# The synthetic ground truth is read here only, and only when probe.ground_truth asks.

# The encoders probed, by name (the untrained encoder needs no file), in the table's order.
PROBED = {n: stage_dir("", n) for n in [*PRETRAINED, *(m for m in MODELS if MODELS[m].probe)]}
PROBE_ENCODERS = [RANDOM_INIT, *PROBED]


# One job per encoder, as soon as that encoder exists (its embedding and probes); the
# untrained encoder's waits on no training.
rule probe_encoder:
    input:
        encoder=lambda wildcards: [PROBED[wildcards.encoder]] if wildcards.encoder in PROBED else [],
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
        P["probe_scores"],
    log:
        log("probe_{encoder}"),
    benchmark:
        bench_tsv("probe_{encoder}")
    wildcard_constraints:
        encoder="|".join(PROBE_ENCODERS),
    priority: PROBE_ENCODER + PROBE_TABLE  # pipeline.priorities: short, fills cores at the end
    conda:
        "../envs/pipeline.yaml"
    threads: config["train"]["num_threads"] or 8  # as training's (runs.smk)
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=0,
    params:
        probe=section("probe"),
        model=section("model"),
        train=section("train"),
        bootstrap=lambda wildcards: {k: config["evaluate"][k] for k in ("n_bootstrap", "seed")},
    script:
        "../scripts/probe_encoder.py"


rule probe:
    input:
        expand(P["probe_scores"], encoder=PROBE_ENCODERS),
    output:
        md=report(P["probe_md"], caption="../report/probe.rst", category="Probe"),
        csv=report(P["probe_csv"], caption="../report/probe.rst", category="Probe"),
        plot=report(P["probe_plot"], caption="../report/probe.rst", category="Figures"),
    log:
        log("probe"),
    benchmark:
        bench_tsv("probe")
    priority: PROBE_TABLE
    conda:
        "../envs/pipeline.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        encoders=PROBE_ENCODERS,
        n_bootstrap=config["evaluate"]["n_bootstrap"],
    script:
        "../scripts/probe.py"
