"""Input plausibility: silent on the clean synthetic cohort, loud on mis-scaled or swapped leads."""

from __future__ import annotations

import re
import shutil
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.plausibility import RELATION_TOL_MV, plausibility
from pipeline.data.wfdb_record import RecordError, read_record
from pipeline.mimic_schema import LEADS
from tests.ecg_format_fixtures import dipole_ecg

CLIP = 3.0
LIMB = ("I", "II", "III", "aVR", "aVL", "aVF")


@pytest.fixture(scope="module")
def cohort(tiny_synthetic: Path) -> list[Path]:
    """Header paths of the tiny synthetic cohort's MIMIC-IV-ECG records (about 1,100)."""
    return sorted((tiny_synthetic / "results/synthetic/mimic-iv-ecg/files").rglob("*.hea"))


def _signals(headers: list[Path]) -> list[np.ndarray]:
    out = []
    for h in headers:
        try:
            out.append(read_record(h, 500, 5000, min_fs=100).signal)
        except RecordError:  # the cohort's deliberately broken records
            continue
    return out


def swapped(x: np.ndarray, a: str, b: str) -> np.ndarray:
    y = x.copy()
    y[[LEADS.index(a), LEADS.index(b)]] = y[[LEADS.index(b), LEADS.index(a)]]
    return y


def test_clean_synthetic_cohort_gives_no_warning_and_5x_gain_always_does(
    cohort: list[Path],
) -> None:
    signals = _signals(cohort[::3])  # every third record: ~380 (all 1,148 pass too)
    assert len(signals) > 300
    warned = {i: w for i, x in enumerate(signals) if (w := plausibility(x, CLIP))}
    assert warned == {}
    for x in signals:
        kinds = [w.split(":")[0] for w in plausibility(5 * x, CLIP)]
        assert "amplitude_high" in kinds
        assert "lead_relation" not in kinds  # a gain error keeps the leads consistent


def test_swapped_limb_leads_are_named_on_the_cohort(cohort: list[Path]) -> None:
    signals = _signals(cohort[::40])
    unseen = 0
    for x in signals:
        for a, b in combinations(LIMB, 2):
            warnings = plausibility(swapped(x, a, b), CLIP)
            if not warnings:  # leads this alike (III and aVF at a 90 degree axis) swap unseen
                diff = x[LEADS.index(a)] - x[LEADS.index(b)]
                assert np.sqrt(np.mean(diff**2)) < 2 * RELATION_TOL_MV
                unseen += 1
                continue
            (warning,) = warnings
            assert warning.startswith("lead_relation:") and f"likely {a} and {b} swapped" in warning
    assert unseen < 0.02 * 15 * len(signals)


def _copy_record(header: Path, dest: Path, edit: dict[str, str]) -> Path:
    """Copy a WFDB record, editing its header lines by regex (a converter's mistake)."""
    dest.mkdir()
    shutil.copy(header.with_suffix(".dat"), dest / header.with_suffix(".dat").name)
    text = header.read_text()
    for pattern, repl in edit.items():
        text = re.sub(pattern, repl, text, flags=re.M)
    (dest / header.name).write_text(text)
    return dest / header.stem


def test_header_gain_5x_off_and_swapped_lead_names_warn_with_their_cause(
    cohort: list[Path], tmp_path: Path
) -> None:
    header = next(h for h in cohort if _signals([h]))
    clean = read_record(header, 500, 5000, min_fs=100)
    assert plausibility(clean.signal, CLIP) == []
    # the converter's mistake: 200 adu/mV written for samples stored at 1,000 per mV,
    # here the other way round: 40 adu/mV for samples stored at 200 per mV (5x too large)
    gain = _copy_record(header, tmp_path / "gain", {r" 200(\.0)?\(": " 40("})
    (high, *_) = plausibility(read_record(gain, 500, 5000, min_fs=100).signal, CLIP)
    assert high.startswith("amplitude_high:") and "likely units or gain" in high
    names = _copy_record(
        header, tmp_path / "swap", {r" I$": " TMP", r" II$": " I", r" TMP$": " II"}
    )
    rec = read_record(names, 500, 5000, min_fs=100)
    assert plausibility(rec.signal, CLIP) == [
        "lead_relation: III = II - I, aVL = I - II/2, aVF = II - I/2 broken "
        "(likely I and II swapped)"
    ]


def test_units_clipping_saturation_and_flat_leads() -> None:
    x = dipole_ecg(np.random.default_rng(3))
    assert plausibility(x, CLIP) == []
    low, flat_all = plausibility(x / 1000, CLIP)  # mV stored, read as uV
    assert low.startswith("amplitude_low: every lead below 0.5 mV")
    assert flat_all.startswith("near_flat_lead: I, II, III")
    sat = x.copy()
    v2 = LEADS.index("V2")
    sat[v2] = np.clip(sat[v2], None, np.percentile(sat[v2], 90))  # an amplifier's rail
    (saturated,) = plausibility(sat, CLIP)
    assert saturated.startswith("saturated: V2")
    flat = x.copy()
    flat[LEADS.index("V4")] = np.random.default_rng(0).normal(0, 0.005, x.shape[1])
    (dead,) = plausibility(flat, CLIP)
    assert dead.startswith("near_flat_lead: V4")
    big = 3 * x
    warnings = plausibility(big, CLIP)
    assert any(w.startswith("clipped:") for w in warnings)
    # derived leads satisfy the relations by construction: not checked
    assert plausibility(swapped(x, "aVL", "aVF"), CLIP, derived=("III", "aVR", "aVL", "aVF")) == []
