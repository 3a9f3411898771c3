"""Results for every subject of a cohort, labelled or not: the cohort study's own output.

The segmentation network segments every frame of every subject (`seg` shard jobs); here
its predictions become, per subject, ED/ES from the predicted LV volume curve, the
phenotypes of the stack and of reconstructions from the predicted labels (baselines),
cardiac output, automatic QC flags (:mod:`.qc`) and, over the cohort, one table
(`tables/cohort_phenotypes`) with a row per subject and method (:mod:`.table`).
Modules: qc (checks on a predicted label cine), files (per-subject file steps),
stages (shard stages), table (cohort table, agreement with a known truth).
"""
