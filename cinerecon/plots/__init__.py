"""Cohort figures (PNG): Bland–Altman panels, Dice box plots and LAX contour overlays.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never
through pyplot: no display is needed, no global backend is switched for the
caller, and no figure lingers in pyplot's registry across thousands of calls.
Every PNG is written atomically.
"""

from .figures import bland_altman, dice_boxplot, lax_overlay, lax_overlay_grid

__all__ = ["bland_altman", "dice_boxplot", "lax_overlay", "lax_overlay_grid"]
