# Linear probes of clinical knowledge in the frozen ECG encoders (pipeline.evaluation.probe),
# side by side: untrained, the two stage-1 encoders (against tabular data; ECG only) and
# every registered model whose entry says probe=True (probe_encoders in common_study.smk).
# The synthetic ground truth is read here only, and only when probe.ground_truth asks.


rule probe:
    input:
        **probe_encoders(),
        shard_index=P["shard_index"],
        train_ids=ids("train"),
        val_ids=ids("val"),
        test_ids=ids("test"),
        features=P["features"],
        lab_targets=P["lab_targets"],
        lab_targets_selected=P["lab_targets_selected"],
        lab_target_manifest=P["lab_target_manifest"],
        ground_truth=probe_ground_truth(),
    output:
        md=report(P["probe_md"], caption="../report/probe.rst", category="Probe"),
        csv=report(P["probe_csv"], caption="../report/probe.rst", category="Probe"),
        plot=report(P["probe_plot"], caption="../report/probe.rst", category="Figures"),
    log:
        log("probe"),
    conda:
        "../envs/pipeline.yaml"
    threads: 8  # capped at --cores locally
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=0,
    params:
        encoders=list(probe_encoders()),
        probe=section("probe"),
        model=section("model"),
        train=section("train"),
        bootstrap=lambda wildcards: {k: config["evaluate"][k] for k in ("n_bootstrap", "seed")},
    script:
        "../scripts/probe.py"
