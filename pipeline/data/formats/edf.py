"""EDF / EDF+ / BDF recordings read with edfio (maintained, pure Python).

Each signal carries its label, sampling rate and ``physical_dimension`` (uV, mV, V);
edfio returns physical values (the header's digital -> physical mapping applied). Only
signals whose label names a lead must share one rate and a known unit; others (annotations,
respiration, markers) are listed as ignored channels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.formats.common import Channels, unit_to_mv
from pipeline.data.leads import canonical_lead
from pipeline.data.wfdb_record import RecordError


def read_edf(path: str | Path) -> Channels:
    """The lead signals of an EDF(+)/BDF file, in mV.

    Raises:
        RecordError: ``read_error``, ``sampling_frequency`` (leads at different rates),
            ``units``, ``not_12_lead`` (no lead signal).
    """
    import edfio  # imported here: only EDF inputs need it

    try:
        edf = edfio.read_edf(Path(path))
    except Exception as err:  # edfio raises ValueError and friends on bad headers
        raise RecordError(f"read_error: not a readable EDF file ({err})") from None
    names, rows, rates, ignored = [], [], set(), []
    for sig in edf.signals:
        if canonical_lead(sig.label) is None:
            ignored.append(sig.label)
            continue
        scale = unit_to_mv(sig.physical_dimension, f"signal {sig.label}")
        names.append(sig.label)
        rates.add(float(sig.sampling_frequency))
        rows.append(np.asarray(sig.data, np.float64) * scale)
    if not rows:
        found = ", ".join(ignored) or "none"
        raise RecordError(f"not_12_lead: no lead among the signals ({found})")
    if len(rates) > 1 or len({len(r) for r in rows}) > 1:
        raise RecordError(f"sampling_frequency: lead signals at several rates ({sorted(rates)} Hz)")
    return Channels(names, np.stack(rows).astype(np.float32), rates.pop(), ignored=ignored)
