# Helpers of sweep.smk (functions only, so each rule file holds rules only).
from pipeline.variants import (
    DEFAULT,
    apply_variant,
    parse_variants,
    repeats_default,
    retrained,
    variant_errors,
)

SWEEP = f"{R}/sweep"


def _check_variants():
    """Stop before the DAG is built on a variant naming an unknown key or a bad value."""
    errors = variant_errors(config, SCHEMA, MODELS)
    if errors:
        raise WorkflowError("invalid config:\n  " + "\n  ".join(f"config {e}" for e in errors))


def _variants():
    """The variants to train; one that equals the config (its setting was adopted as the
    default) is left out with a warning, since its row would repeat the default's."""
    kept = {}
    for v in parse_variants(config["sweep"]["variants"]):
        if not repeats_default(config, v):
            kept[v.name] = v
            continue
        logger.warning(
            f"sweep: variant {v.name} ({v.describe()}) equals the config; the default run "
            "stands for it, so the sweep leaves it out"
        )
    return kept


_check_variants()
VARIANTS = _variants()
# Variant -> (stage-1 encoders, models) it re-trains; the rest comes from the default run.
RETRAINED = {name: retrained(v, MODELS) for name, v in VARIANTS.items()}
VARIANT_CONFIG = {name: apply_variant(config, v) for name, v in VARIANTS.items()}


def swept(path):
    """The per-variant twin of a results path (results/sweep/{variant}/...), else itself."""
    return twin(path, f"{SWEEP}/{{variant}}")


def swept_inputs(rule_name):
    """A rule's named inputs, per-variant ones moved under the variant's directory."""
    return twin_inputs(rule_name, swept)


def swept_training_inputs(wildcards):
    """training_inputs, the encoder to start from and the teacher taken from the variant's
    directory where the variant re-trains them, else from the default run."""
    spec, variant = MODELS[wildcards.model], wildcards.variant
    encoders, models = RETRAINED[variant]
    inputs = training_inputs(wildcards)
    for key, upstream in (("init_dir", spec.init), ("teacher_dir", spec.teacher)):
        if key in inputs and upstream in {*encoders, *models}:
            inputs[key] = swept(inputs[key]).format(variant=variant)
    return inputs


def swept_pretrain_section(wildcards):
    return pretrain_section(cfg=VARIANT_CONFIG[wildcards.variant])


def swept_model_section(wildcards):
    return model_settings(MODELS[wildcards.model].section, cfg=VARIANT_CONFIG[wildcards.variant])


def swept_augment(wildcards):
    return section("pretrain_ecg_only", "augment", cfg=VARIANT_CONFIG[wildcards.variant])


def swept_checkpoints(stage=None):
    """The per-variant checkpoint directory of ``stage`` (None: the job's {model})."""
    return lambda wc: f"{SWEEP}/{wc.variant}/checkpoints/{stage or wc.model}"


def sweep_runs():
    """[variant, model] rows of the sweep table: for every model some variant re-trains, the
    default run's first, then each variant's, in config order."""
    swept_models = {m for _, models in RETRAINED.values() for m in models}
    rows = [[DEFAULT, m] for m in MODELS if m in swept_models]
    return rows + [[v, m] for v, (_, models) in RETRAINED.items() for m in models]


def sweep_files(path):
    """``path`` for every sweep_runs() row: the default run's own file, or the variant's."""
    return [
        (str(path) if variant == DEFAULT else swept(path)).format(variant=variant, model=model)
        for variant, model in sweep_runs()
    ]
