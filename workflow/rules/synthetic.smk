# Synthetic MIMIC-IV / -ED / -ECG cohort in the exact PhysioNet layout (the embedded default).
# One job per world some run reads (PLAN.datasets): the config's at the source paths, another
# world's at the same paths under its data prefix (results/regime/world-null/synthetic/...).
# Source paths outside results/ allow the config's world only (run_checks.axis_errors).
if config["source"]["synthetic"]:
    _movable = all(under(SRC[key], R) for key in DATASETS)
    _RUN = RUN if _movable else ""
    _SRC = source(_RUN)

    rule synthesize_cohort:
        output:
            [
                source_path(_SRC, t)
                for t in TABLES
                if t not in ("record_list", "patients", "edstays")
            ],
            f"{_SRC['mimic_iv_ecg']}/machine_measurements.csv",
            directory(f"{_SRC['mimic_iv_ecg']}/files"),
            record_list=source_path(_SRC, "record_list"),
            patients=source_path(_SRC, "patients"),
            edstays=source_path(_SRC, "edstays"),
            ground_truth=path("ground_truth", _RUN),
            done=path("synthetic_done", _RUN),
        log:
            log("synthesize_cohort", _RUN),
        benchmark:
            bench_tsv("synthesize_cohort", _RUN)
        conda:
            "../envs/pipeline.yaml"
        threads: 2  # WFDB record writers, a chunk of 400 patients each (same bytes)
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            synthetic=lambda wildcards: PLAN.datasets[wildcards.get("run", "")],
            # dataset roots, from the files that sit at known depths below them
            mimic_iv=lambda wildcards, output: Path(output.patients).parents[1],
            mimic_iv_ed=lambda wildcards, output: Path(output.edstays).parents[1],
            mimic_iv_ecg=lambda wildcards, output: Path(output.record_list).parent,
        script:
            "../scripts/synthesize_cohort.py"
