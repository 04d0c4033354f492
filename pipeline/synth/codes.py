"""ICD codes of a stay (hospital discharge codes and ED diagnoses) from its latent state."""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.synth.catalogue import ICD9, ICD10_TITLES, ICD10_TO_ICD9


def _col(stays: pl.DataFrame, name: str) -> np.ndarray:
    return stays[name].to_numpy()


def hospital_codes(rng: np.random.Generator, stays: pl.DataFrame) -> list[list[str]]:
    """ICD-10 discharge codes per stay (acute problems first, then comorbidities).

    Codes are noisy like real coding: a present condition is coded with a probability
    below one, so labels are informative but imperfect.
    """
    n = stays.height
    c = {k: _col(stays, k) for k in stays.columns}
    u = rng.random((n, 40))
    out: list[list[str]] = []
    for i in range(n):
        codes: list[str] = []
        p = u[i]
        if c["ischaemia"][i]:
            codes.append(
                ("I2109", "I2119", "I214")[c["territory"][i] - 1]
                if c["stemi"][i] and c["territory"][i] < 3
                else "I214"
            )
        if c["sepsis"][i]:
            codes.append("A419")
            if p[0] < 0.4:
                codes.append("R6520")
        if c["hf_decomp"][i]:
            codes.append("I5023" if c["hf_systolic"][i] else "I5033")
        if c["pneumonia"][i] and p[1] < 0.85:
            codes.append("J189")
        if c["uti"][i] and p[2] < 0.85:
            codes.append("N390")
        if c["aki"][i] and p[3] < 0.8:
            codes.append("N179")
        if c["potassium"][i] > 5.4 and p[4] < 0.8:
            codes.append("E875")
        if c["potassium"][i] < 3.3 and p[5] < 0.7:
            codes.append("E876")
        if c["sodium"][i] < 132 and p[6] < 0.75:
            codes.append("E871")
        if c["calcium"][i] < 8.0 and p[7] < 0.6:
            codes.append("E8351")
        low_hb = c["hemoglobin"][i] < (11.5 if c["female"][i] else 12.5)
        if low_hb and p[8] < 0.7:
            codes.append("D631" if c["ckd_stage"][i] and p[9] < 0.5 else "D649")
        if c["complaint"][i] == 0 and not c["ischaemia"][i] and p[10] < 0.5:
            codes.append("R079")
        if c["complaint"][i] == 2 and p[11] < 0.6:
            codes.append("R55")
        _comorbidities(c, i, p, codes)
        out.append(list(dict.fromkeys(codes)))
    return out


_CHRONIC = (
    ("hypertension", "I10", 0.85),
    ("hyperlipidemia", "E785", 0.75),
    ("diabetes", "E119", 0.9),
    ("insulin", "Z794", 0.7),
    ("cad", "I2510", 0.8),
    ("copd", "J449", 0.8),
    ("smoker", "Z87891", 0.6),
)


def _comorbidities(c: dict[str, np.ndarray], i: int, p: np.ndarray, codes: list[str]) -> None:
    stage = c["ckd_stage"][i]
    if c["af"][i] or c["af_chronic"][i]:
        if p[12] < 0.9:
            codes.append("I480" if c["af_paroxysmal"][i] else "I4891")
        if p[13] < 0.55:
            codes.append("Z7901")
    if c["hf"][i] and not c["hf_decomp"][i] and p[14] < 0.85:
        codes.append("I509")
    if c["bbb"][i] and p[15] < 0.85:
        codes.append("I447" if c["bbb"][i] == 1 else "I4510")
    if stage and p[16] < 0.9:
        codes.append({3: "N183", 4: "N184", 5: "N186"}[int(stage)])
    for k, (flag, code, prob) in enumerate(_CHRONIC):
        if c[flag][i] and p[17 + k] < prob:
            codes.append(code)
    if c["bmi"][i] >= 30 and p[30] < 0.5:
        codes.append("E669")


_COMPLAINT_CODE = {0: "R079", 1: "R0602", 2: "R55"}


def ed_codes(
    rng: np.random.Generator, stays: pl.DataFrame, hosp: list[list[str]]
) -> list[list[str]]:
    """ED diagnosis codes: the presenting symptom plus up to two of the clear problems."""
    complaint = _col(stays, "complaint")
    out = []
    visible = {
        "A419",
        "I214",
        "I2109",
        "I2119",
        "I5023",
        "I5033",
        "I4891",
        "I480",
        "J189",
        "N390",
        "N179",
        "E875",
        "E871",
        "D649",
        "R55",
    }
    for i in range(stays.height):
        codes = [c for c in hosp[i] if c in visible][:2]
        sym = _COMPLAINT_CODE.get(int(complaint[i]))
        if sym is not None and (not codes or rng.random() < 0.5):
            codes.insert(0, sym)
        if not codes:
            codes = ["R079" if rng.random() < 0.3 else "R0602"]
        out.append(list(dict.fromkeys(codes)))
    return out


def code_rows(
    stays: pl.DataFrame, codes: list[list[str]], mask: np.ndarray, icd9: np.ndarray
) -> pl.DataFrame:
    """Long format (row index, seq_num, icd_code, icd_version, title) for stays in ``mask``."""
    idx, seq, code, ver, title = [], [], [], [], []
    for i in np.flatnonzero(mask):
        for j, c10 in enumerate(codes[i], start=1):
            use9 = bool(icd9[i]) and c10 in ICD10_TO_ICD9
            c = ICD10_TO_ICD9[c10] if use9 else c10
            idx.append(i)
            seq.append(j)
            code.append(c)
            ver.append(9 if use9 else 10)
            title.append(ICD9[c][0] if use9 else ICD10_TITLES[c10])
    return pl.DataFrame(
        {"row": idx, "seq_num": seq, "icd_code": code, "icd_version": ver, "icd_title": title},
        schema={
            "row": pl.Int64,
            "seq_num": pl.Int64,
            "icd_code": pl.Utf8,
            "icd_version": pl.Int64,
            "icd_title": pl.Utf8,
        },
    )
