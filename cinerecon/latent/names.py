"""Method names of the latent variants (importable without torch, for the Snakefile)."""


def deeprecon_variant(steps: int) -> str:
    """deeprecon_no (encoder only), deeprecon_1k, deeprecon_10k, deeprecon_250 ..."""
    if steps == 0:
        return "deeprecon_no"
    return f"deeprecon_{steps // 1000}k" if steps % 1000 == 0 else f"deeprecon_{steps}"
