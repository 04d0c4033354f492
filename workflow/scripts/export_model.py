"""Rule export_model: results/models/method_labs -> results/export/method_labs."""

import json
import logging
from pathlib import Path

from pipeline.data.ecg_store import ShardStore
from pipeline.infer.card import CardInputs
from pipeline.infer.export import export_model_dir
from pipeline.logs import setup_logging
from pipeline.train.data import read_ids

setup_logging(snakemake.log[0])
inp = snakemake.input
ids = {part: read_ids(inp[f"{part}_ids"]) for part in ("train", "val", "test")}
# the check records: the first test records, exactly as training's shards hold them
check_x = ShardStore(inp.shard_index).get_many(ids["test"][: snakemake.params.n_check])
source = "synthetic cohort (pipeline.synth)" if snakemake.params.synthetic else "MIMIC-IV-ECG"
card = CardInputs(
    data_source=source,
    split_sizes={part: len(v) for part, v in ids.items()},
    table1=json.loads(Path(inp.table1_json).read_text()),
)
report = export_model_dir(
    Path(inp.model_dir),
    Path(snakemake.output[0]),
    Path(inp.label_manifest),
    Path(inp.lab_targets),
    check_x,
    card,
)
logging.getLogger("export_model").info(
    "model.onnx: max |onnx - torch| %.2e on %d test records", report.worst, report.n_records
)
