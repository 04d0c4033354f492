"""ECG-only inference: read any standard 12-lead record, score it, explain it, export.

Modules: :mod:`~pipeline.infer.records` (inputs, reading as the shard stage does),
:mod:`~pipeline.infer.bundle` (a model directory and its torch / ONNX scorers),
:mod:`~pipeline.infer.predict` (batch scoring to one table, resumable),
:mod:`~pipeline.infer.explain` (readable findings), :mod:`~pipeline.infer.plot`
(12-lead figure), :mod:`~pipeline.infer.network` and :mod:`~pipeline.infer.export`
(the exportable network, ONNX and the self-contained model directory),
:mod:`~pipeline.infer.cli` (``ecg-explain``).
"""
