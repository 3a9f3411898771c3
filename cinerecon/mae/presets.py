"""The MAE presets' patch sizes, torch-free: the configuration check (cinerecon.config_checks)
refuses a `mae` section whose planes and frames do not tile into patches before any job runs."""

# preset: (patch_xy pixels, patch_t frames)
PATCHES = {"tiny": (8, 5), "paper": (8, 25)}


def tiling_problem(mae: dict) -> tuple[str, str] | None:
    """(config key, reason) if the `mae` section's input does not tile into its patches."""
    patch_xy, patch_t = PATCHES[mae.get("preset", "tiny")]
    model = mae.get("model") or {}
    patch_xy, patch_t = model.get("patch_xy", patch_xy), model.get("patch_t", patch_t)
    size, downsample, frames = mae.get("size", 128), mae.get("downsample", 1), mae.get("n_frames", 50)
    if size % downsample:
        return "mae.size", f"{size} px is not a multiple of mae.downsample {downsample}"
    if (size // downsample) % patch_xy:
        return "mae.size", f"{size} px / {downsample} = {size // downsample} px do not tile into {patch_xy} px patches"
    if frames % patch_t:
        return "mae.n_frames", f"{frames} frames do not tile into {patch_t}-frame patches"
    return None
