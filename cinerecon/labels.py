"""Label conventions shared by every module (see DESIGN.md).

SAX labels: 0 background, 1 LV blood pool, 2 LV myocardium, 3 RV blood pool.
LAX labels add 4 left atrium and 5 right atrium. Stored as uint8.

Manual LAX label *files* come in other conventions, declared per cohort (and per subject
in the sheet) and mapped to the pipeline's values at ingest (``LAX_CONVENTIONS``):
- ``ukbb``: the UK Biobank / ukbb_cardiac annotations, atria only: 2ch 1 = LA;
  4ch 1 = LA, 2 = RA; no 3ch labels;
- ``full``: the pipeline's own values on every view (LVC, LVM, RVC, LA, RA), as drawn for
  the papers' small annotated evaluation sets;
- ``none``: no LAX labels.
"""

from __future__ import annotations

BG, LVC, LVM, RVC, LA, RA = 0, 1, 2, 3, 4, 5

SAX_LABELS = {LVC: "LVC", LVM: "LVM", RVC: "RVC"}
LAX_LABELS = {LVC: "LVC", LVM: "LVM", RVC: "RVC", LA: "LA", RA: "RA"}

# Myocardial tissue density used for LV mass (g/mL).
MYOCARDIAL_DENSITY_G_PER_ML = 1.05

LAX_VIEWS = ("2ch", "3ch", "4ch")

# {convention: {view: {value in the file: pipeline value}}}; 0 is background everywhere.
LAX_CONVENTIONS = {
    "ukbb": {"2ch": {1: LA}, "3ch": {}, "4ch": {1: LA, 2: RA}},
    "full": {view: {value: value for value in LAX_LABELS} for view in LAX_VIEWS},
    "none": {view: {} for view in LAX_VIEWS},
}


def lax_conventions(spec) -> dict[str, str]:
    """{view: convention} from one convention name for every view, or a {view: name} mapping
    (views left out carry no labels)."""
    per_view = {view: spec for view in LAX_VIEWS} if isinstance(spec, str) else dict(spec or {})
    unknown_views = set(per_view) - set(LAX_VIEWS)
    if unknown_views:
        raise ValueError(f"LAX label convention given for unknown view(s) {sorted(unknown_views)}; "
                         f"views are {list(LAX_VIEWS)}")
    unknown = {name for name in per_view.values()} - set(LAX_CONVENTIONS)
    if unknown:
        raise ValueError(f"unknown LAX label convention(s) {sorted(unknown)}; use {sorted(LAX_CONVENTIONS)}")
    return {view: per_view.get(view, "none") for view in LAX_VIEWS}


def lax_structures(convention: str, view: str) -> dict[int, str]:
    """{pipeline value: name} of the structures a view labelled in `convention` carries."""
    return {value: LAX_LABELS[value] for value in LAX_CONVENTIONS[convention][view].values()}


def lax_value_table(convention: str, view: str, to_file: bool = False):
    """A 256-entry uint8 lookup table for a LAX view's labels: file values -> pipeline values
    (`to_file`: the reverse; values the convention does not carry become background)."""
    import numpy as np

    table = np.zeros(256, np.uint8)
    for file_value, value in LAX_CONVENTIONS[convention][view].items():
        if to_file:
            table[value] = file_value
        else:
            table[file_value] = value
    return table


def describe_convention(convention: str, view: str) -> str:
    """'1 = LA, 2 = RA' (the file's values), or 'no labels'."""
    mapping = LAX_CONVENTIONS[convention][view]
    return ", ".join(f"{k} = {LAX_LABELS[v]}" for k, v in mapping.items()) or "no labels"


# Colours of the pipeline's label values in viewers (ITK-SNAP's default palette order)
LABEL_COLOURS = {LVC: (255, 0, 0), LVM: (0, 255, 0), RVC: (0, 0, 255), LA: (255, 255, 0), RA: (0, 255, 255)}


def itksnap_label_description() -> str:
    """An ITK-SNAP label description file (Segmentation > Import Label Descriptions) naming
    every pipeline label value, SAX and LAX alike."""
    names = {BG: "Clear Label", LVC: "LV blood pool (LVC)", LVM: "LV myocardium (LVM)", RVC: "RV blood pool (RVC)",
             LA: "left atrium (LA)", RA: "right atrium (RA)"}
    lines = ["################################################",
             "# ITK-SnAP Label Description File (cinerecon.labels)",
             "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL",
             "################################################"]
    for value, name in names.items():
        r, g, b = LABEL_COLOURS.get(value, (0, 0, 0))
        visible = int(value != BG)
        lines.append(f"{value:5d} {r:5d} {g:4d} {b:4d} {float(visible):8.2f} {visible:2d} {visible:2d}    \"{name}\"")
    return "\n".join(lines) + "\n"
