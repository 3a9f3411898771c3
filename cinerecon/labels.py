"""Label conventions shared by every module (see DESIGN.md).

SAX labels: 0 background, 1 LV blood pool, 2 LV myocardium, 3 RV blood pool.
LAX labels add 4 left atrium and 5 right atrium. Stored as uint8.
"""

BG, LVC, LVM, RVC, LA, RA = 0, 1, 2, 3, 4, 5

SAX_LABELS = {LVC: "LVC", LVM: "LVM", RVC: "RVC"}
LAX_LABELS = {LVC: "LVC", LVM: "LVM", RVC: "RVC", LA: "LA", RA: "RA"}

# Myocardial tissue density used for LV mass (g/mL).
MYOCARDIAL_DENSITY_G_PER_ML = 1.05

LAX_VIEWS = ("2ch", "3ch", "4ch")
