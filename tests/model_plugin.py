"""A model-registry plugin for tests/test_model_registry.py (config model_registry.plugins).

A sixth model, lab targets from the ECG alone with an S4 trained from scratch: registering
it here is all it takes to train, evaluate and report it.
"""

from pipeline.registry import ModelSpec, Table1Row

MODELS = (
    ModelSpec(
        "signal_only_labs",
        "labs",
        None,
        None,
        "mlp",
        row=Table1Row("Supervised signal-only lab prediction (S4)", "ECG", "ECG, lab values", 4),
    ),
)
