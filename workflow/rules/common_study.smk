# Helpers of probe.smk and study.smk (functions only, so each rule file holds rules only).


def probe_ground_truth():
    """[the latent parquet] when probe.ground_truth applies, else []."""
    wanted = config["probe"]["ground_truth"]
    if wanted is True and not SRC["synthetic"]:
        raise WorkflowError(
            "config probe.ground_truth: true needs source.synthetic: true "
            "(only the synthetic cohort has a ground truth); use auto or false"
        )
    applies = wanted is True or (wanted == "auto" and SRC["synthetic"])
    return [P["ground_truth"]] if applies else []


def probe_encoders():
    """The probe's encoder directories by name: the stage-1 ones, then each registered model
    whose entry has probe=True (the untrained encoder needs no file)."""
    probed = [name for name, spec in MODELS.items() if spec.probe]
    return PRETRAINED_DIRS | {name: model_dir(name) for name in probed}


# The study (study.smk): per-seed twins of the training and evaluation outputs.
STUDY = f"{R}/study"
SEEDS = config["study"]["seeds"]
SEEDED = ("models", "predictions", "evaluation", "checkpoints", "logs", "benchmarks")
# Config sections of the training stages: pretrain's and each registered model's.
STAGE_SECTIONS = {"pretrain"} | {spec.section for spec in MODELS.values()}


def _default_seed():
    """The seed all training stages of the default run share, or None where they differ."""
    seeds = {config["pretrain"]["seed"]}
    seeds |= {model_settings(name)["seed"] for name in STAGE_SECTIONS - {"pretrain"}}
    return seeds.pop() if len(seeds) == 1 else None


# A study seed equal to the default run's seed *is* the default run (same config, same
# rules): its table rows read the default run's files instead of training it a second time.
DEFAULT_SEED = _default_seed()


def study_files(path):
    """path for every (seed, model), seed-major as study_table1 expects; the default run's
    own files for its seed, the per-seed twins for the others."""
    return [
        (str(path) if seed == DEFAULT_SEED else seeded(path)).format(seed=seed, model=model)
        for seed in SEEDS
        for model in SUPERVISED
    ]


def twin(path, root):
    """A results path moved under ``root`` (results/<sub>/... -> <root>/<sub>/... for sub in
    SEEDED: what a training stage writes); shared inputs (extract, shards, splits) stay."""
    for sub in SEEDED:
        prefix = f"{R}/{sub}/"
        if str(path).startswith(prefix):
            return f"{root}/{sub}/{str(path)[len(prefix):]}"
    return str(path)


def twin_inputs(rule_name, move):
    """A rule's named inputs, each passed through ``move`` (seeded or swept)."""
    return {name: move(path) for name, path in getattr(rules, rule_name).input.items()}


def seeded(path):
    """The per-seed twin of a results path (results/study/seed{seed}/...), else itself."""
    return twin(path, f"{STUDY}/seed{{seed}}")


def seeded_inputs(rule_name):
    """A rule's named inputs, per-seed ones moved under the seed's directory."""
    return twin_inputs(rule_name, seeded)


def seeded_benchmark(rule_name):
    """The per-seed twin of a rule's benchmark file (None, i.e. unchanged, when it has none)."""
    bench = getattr(rules, rule_name).rule.benchmark
    return None if bench is None else seeded(bench)


def seeded_section(name):
    """Config section ``name`` (a training stage's) with its seed replaced by the study seed."""
    base = pretrain_section() if name == "pretrain" else model_settings(name)
    return lambda wildcards: {**base, "seed": int(wildcards.seed)}


def seeded_model_section(wildcards):
    """study_train_model's stage params: the model's config section, seed set to {seed}."""
    name = MODELS[wildcards.model].section
    return seeded_section(name)(wildcards)


def seeded_training_inputs(wildcards):
    """training_inputs with the per-seed ones (models/) moved under the seed's directory."""
    return {
        name: seeded(path).format(seed=wildcards.seed)
        for name, path in training_inputs(wildcards).items()
    }


def seeded_checkpoints(model=None):
    """The per-seed checkpoint directory of ``model`` (None: the job's {model} wildcard)."""
    return lambda wc: f"{STUDY}/seed{wc.seed}/checkpoints/{model or wc.model}"
