# Evaluation of every registered model (pipeline/registry.py) on the test fold, once per
# (run, model) the run re-trains; then the default run's Table 1 and report.
# MLflow is only written to (child run per evaluation, the parent run for the report).


rule evaluate:
    input:
        predictions=P["predictions"],
        label_manifest=data_file("label_manifest"),
        lab_target_manifest=data_file("lab_target_manifest"),
    output:
        summary=P["evaluation"],
        per_label=report(
            P["per_label"],
            caption="../report/per_label.rst",
            category="Per-label results",
            subcategory="{model}",
            labels={"model": "{model}"},
        ),
    log:
        log("evaluate_{model}", RUN),
    benchmark:
        bench_tsv("evaluate_{model}", RUN)
    wildcard_constraints:
        model="|".join(SUPERVISED),
    priority: EVALUATE + REPORT  # pipeline.priorities: short, fills cores at the end
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        task=lambda wc: SUPERVISED[wc.model],
        evaluate=section("evaluate"),
    script:
        "../scripts/evaluate.py"


rule report:
    input:
        evaluations=expand(P["evaluation"], run="", model=SUPERVISED),
        predictions=expand(P["predictions"], run="", model=SUPERVISED),
        label_manifest=path("label_manifest"),
        lab_target_manifest=path("lab_target_manifest"),
        probe_md=P["probe_md"],
        probe_csv=P["probe_csv"],
        probe_plot=P["probe_plot"],
    output:
        table1_md=report(
            P["table1_md"],
            caption="../report/table1.rst",
            category="Table 1",
        ),
        table1_csv=report(
            P["table1_csv"],
            caption="../report/table1.rst",
            category="Table 1",
        ),
        table1_json=P["table1_json"],
        report=report(P["report"], caption="../report/report_md.rst", category="Report"),
        # per-label AUROC and ROC figures, the lift heatmap and its CSV (explanations_lift.*)
        plots=report(
            directory(P["plots"]),
            patterns=["{figure}.png", "{table}.csv"],
            caption="../report/figures.rst",
            category=plots_category,
        ),
    log:
        log("report"),
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        models=list(SUPERVISED),
        evaluate=section("evaluate"),
        explain=section("explain"),
    script:
        "../scripts/report.py"
