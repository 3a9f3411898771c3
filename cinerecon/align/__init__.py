"""Slice-misalignment correction of the SAX stack against the LAX views.

Storage choice: the correction is applied to the pixels (each SAX slice resampled by
its estimated shift, labels by one-hot interpolation), so the aligned stack keeps one
affine and every downstream consumer reads it like any other NIfTI; `shifts.tsv`
records what was done.
"""

from cinerecon.align.correct import apply_shifts, estimate_shifts

METHODS = ("intensity", "labels", "none")

__all__ = ["METHODS", "apply_shifts", "estimate_shifts"]
