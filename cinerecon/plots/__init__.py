"""Cohort figures (PNG): Bland–Altman small multiples (a panel per phenotype x method),
Dice box plots and LAX contour overlays.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never
through pyplot: no display is needed, no global backend is switched for the
caller, and no figure lingers in pyplot's registry across thousands of calls.
Every PNG is written atomically.
"""

from .figures import METHOD_FAMILIES, bland_altman, dice_boxplot, lax_overlay, lax_overlay_grid, method_family

__all__ = ["METHOD_FAMILIES", "bland_altman", "dice_boxplot", "lax_overlay", "lax_overlay_grid", "method_family"]
