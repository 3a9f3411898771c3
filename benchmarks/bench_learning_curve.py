"""Learning curves of the generative methods: quality against training budget, next to linear.

Usage: python benchmarks/bench_learning_curve.py [--budgets 1 4 16] [--size 64] [--out results_learning]
       [--cores 2] [--subjects 10] [--methods deeprecon dmcvr diffae] [--set KEY=VALUE ...]

Budget b multiplies the demo preset's training budgets (config/presets/demo.yaml): StyleGAN2
steps, encoder steps and the longest inversion (DeepRecon), and the diffusion autoencoders'
steps (DMCVR, DiffAE). Everything else is the demo's, so 1x is the demo. Each budget runs the
real pipeline (`snakemake <report tables>`) into the same results folder: the cohort, crops,
alignment, segmentation network and baselines are made once, and changing a budget reruns
only what it reaches (the generative models and their reconstructions), as a checkpoint
change would. Per budget the tables and figures are kept under <out>/x<b>/ with run.yaml (the
configuration and the commit); a budget kept from the same configuration and clean commit
is not run again.

--size 64 acquires the cohort at 2.74 mm pixels and crops 64 px (the demo's 96 px field of
view at two thirds the resolution): the generative models work at 64 px as in the demo
(deeprecon.image_size, dmcvr.model.image_size), and the segmentation network, alignment and
baselines get 2.25x fewer pixels too. --size 96 is the demo's acquisition (--set
deeprecon.image_size=null etc. for generative models at the crop's size). Prints, per budget
and method: held-out-slice PSNR, SSIM and Dice LVC (the rebuilt middle of three acquired
slices), PSNR of the rebuilt acquired slices, LAX Dice LVC and truth Dice LVC, and the
training seconds; writes the same to
<out>/learning_curve.{csv,md}. A figure per budget (<out>/x<b>/slices.png) shows a test
subject's acquired ED slices beside each method's rebuild of them and of the slices between.
"""

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
TABLES = ["heldout_slices", "lax_dice_numeric", "truth_metrics_numeric", "image_quality"]
FIGURES = ["dice_lax.png", "dice_truth.png"]
DEMO_PIXEL_MM, DEMO_SAX_CROP, DEMO_LAX_CROP = 1.8269, 96, 112


def demo_budgets() -> dict:
    demo = yaml.safe_load((REPO / "config/presets/demo.yaml").read_text())
    d, m = demo["deeprecon"], demo["dmcvr"]
    return {"gan_steps": d["gan_steps"], "encoder_steps": d["encoder_steps"],
            "inversion_steps": max(d["inversion"]["steps"]), "diffusion_steps": m["steps"],
            "acquisition": demo["cohort"]["synthetic"]["acquisition"]}


def budget_config(b: int, args, base: dict) -> dict:
    """The --configfile of budget b (merged over the demo preset by the pipeline)."""
    config = {"results": str(args.out / "results"),
              "cohort": {"synthetic": {"n_subjects": args.subjects}},
              # fixed, not the demo's: which slices share a batch moves the last digits
              "batch": {"subjects_per_shard": 4},
              "deeprecon": {"enabled": "deeprecon" in args.methods,
                            "gan_steps": base["gan_steps"] * b, "encoder_steps": base["encoder_steps"] * b,
                            "inversion": {"steps": [0, base["inversion_steps"] * b]}},
              "dmcvr": {"enabled": bool({"dmcvr", "diffae"} & set(args.methods)),
                        "methods": [m for m in ("dmcvr", "diffae") if m in args.methods] or ["dmcvr"],
                        "steps": base["diffusion_steps"] * b}}
    if args.size != DEMO_SAX_CROP:
        scale = DEMO_SAX_CROP / args.size
        acq = base["acquisition"]
        config["cohort"]["synthetic"]["acquisition"] = {
            "pixel_mm": round(DEMO_PIXEL_MM * scale, 4),
            "sax_matrix": [round(v / scale) for v in acq["sax_matrix"]],
            "lax_matrix": [round(v / scale) for v in acq["lax_matrix"]]}
        lax = 4 * round(DEMO_LAX_CROP / scale / 4)
        config["crop"] = {"sax_size": [args.size, args.size], "lax_size": [lax, lax]}
    # the phantom the recorded curve was measured on (README, design notes); --set
    # cohort.synthetic.acquisition.phantom=realistic measures the harder one
    config["cohort"]["synthetic"].setdefault("acquisition", {})["phantom"] = "smooth"
    for item in args.set:
        key, value = item.split("=", 1)
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return config


def revision() -> str:
    """The commit the pipeline runs, "+dirty" when tracked files differ from it."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    return head + ("+dirty" if dirty else "")


def kept_run_matches(keep: Path, run: dict) -> bool:
    """Whether <out>/x<b>/ holds this very run (same configuration, same clean commit)."""
    record = keep / "run.yaml"
    return (keep / "heldout_slices.csv").exists() and record.exists() and not run["revision"].endswith("+dirty") \
        and yaml.safe_load(record.read_text()) == run


def run_budget(b: int, config: dict, args) -> Path:
    """Run the pipeline at budget b; keep its tables and figures under <out>/x<b>/."""
    keep = args.out / f"x{b}"
    shutil.rmtree(keep, ignore_errors=True)  # never a mix of two runs
    config_path = args.out / f"x{b}.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    results = args.out / "results"
    targets = [str(results / "tables" / f"{t}.csv") for t in TABLES]
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(args.cores), "--configfile", str(config_path),
           "--rerun-triggers", "mtime", "params", "input", "code", "--rerun-incomplete", "--keep-going",
           *targets]
    print(f"budget {b}x: snakemake --cores {args.cores} --configfile {config_path} ... (log {keep}.log)", flush=True)
    started = time.perf_counter()
    with open(f"{keep}.log", "w") as log:
        code = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    if code:
        raise SystemExit(f"budget {b}x: snakemake failed (exit {code}); see {keep}.log")
    keep.mkdir(parents=True)
    for t in TABLES:
        shutil.copy2(results / "tables" / f"{t}.csv", keep / f"{t}.csv")
    for name in FIGURES:
        if (results / "figures" / name).exists():
            shutil.copy2(results / "figures" / name, keep / name)
    models = {"deeprecon": "deeprecon", "dmcvr": "dmcvr", "diffae": "diffae"}
    for method in args.methods:  # G samples, DDIM round trips
        for figure in (results / "models" / models[method]).glob("*/*.png"):
            shutil.copy2(figure, keep / f"{method}_{figure.name}")
    training_seconds(results, args.methods).to_csv(keep / "training_seconds.csv", index=False)
    slices_figure(results, keep / "slices.png", b, generative_methods(config))
    (keep / "wall_seconds.txt").write_text(f"{time.perf_counter() - started:.0f}\n")
    return keep


def training_seconds(results: Path, methods) -> pd.DataFrame:
    """Seconds of each training (and inversion) job of the methods (Snakemake's benchmark files)."""
    files = {"deeprecon": [("stylegan2", "train_stylegan2.tsv"), ("encoder", "train_encoder.tsv")]
             + [(f"invert/{f.stem}", f"invert/{f.name}") for f in sorted((results / "benchmarks/invert").glob("*.tsv"))],
             "dmcvr": [("dmcvr", "train_diffusion/dmcvr.tsv")], "diffae": [("diffae", "train_diffusion/diffae.tsv")]}
    rows = [{"model": name, "seconds": float(pd.read_csv(results / "benchmarks" / path, sep="\t")["s"].iloc[-1])}
            for method in methods for name, path in files[method] if (results / "benchmarks" / path).exists()]
    return pd.DataFrame(rows, columns=["model", "seconds"])


def generative_methods(config: dict) -> list[str]:
    """The generative rows of a budget's run (older budgets' folders are left in results/)."""
    from cinerecon.latent.names import deeprecon_variant

    methods = []
    if config["deeprecon"]["enabled"]:
        methods += [deeprecon_variant(s) for s in config["deeprecon"]["inversion"]["steps"]]
    if config["dmcvr"]["enabled"]:
        methods += config["dmcvr"]["methods"]
    return methods


def slices_figure(results: Path, path: Path, b: int, methods: list[str]) -> None:
    from cinerecon.plots.generated import generated_slices_figure

    generated_slices_figure(results, path, methods=methods, title=f"budget {b}x")


def summary_rows(b: int, keep: Path) -> pd.DataFrame:
    """One row per method: the budget's figures that the closing table reports. `row` names the
    DeepRecon variant by what it is (deeprecon_inv: the longest inversion), so that budgets line up."""
    held = pd.read_csv(keep / "heldout_slices.csv").set_index("method")
    lax = pd.read_csv(keep / "lax_dice_numeric.csv")
    if "protocol" in lax.columns:  # the coverage-masked protocol, as the curve always reported
        lax = lax[lax["protocol"] == "covered"]
    lax = lax.set_index("method")
    truth = pd.read_csv(keep / "truth_metrics_numeric.csv")
    truth = truth[(truth.structure == "LVC") & (truth.metric == "dice")].set_index("method")
    acquired = pd.read_csv(keep / "image_quality.csv").set_index("method")
    rows = []
    for method in held.index:
        row = "deeprecon_inv" if method.startswith("deeprecon_") and method != "deeprecon_no" else method
        rows.append({"budget": f"{b}x", "row": row, "method": method,
                     "heldout_psnr": held.loc[method, "psnr_mean"], "heldout_ssim": held.loc[method, "ssim_mean"],
                     "heldout_dice_LVC": held.loc[method, "dice_LVC_mean"],
                     "acquired_psnr": acquired.loc[method, "psnr_mean"] if method in acquired.index else float("nan"),
                     "lax_dice_LVC": lax.loc[method, "average_mean"] if method in lax.index else float("nan"),
                     "truth_dice_LVC": truth.loc[method, "mean"] if method in truth.index else float("nan")})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--size", type=int, default=64, help="SAX crop in pixels over the demo's field of view")
    ap.add_argument("--out", type=Path, default=REPO / "results_learning")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--subjects", type=int, default=10)
    ap.add_argument("--methods", nargs="+", default=["deeprecon", "dmcvr", "diffae"],
                    choices=["deeprecon", "dmcvr", "diffae"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="another config override for every budget, e.g. dmcvr.ddim_steps=20")
    args = ap.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    base = demo_budgets()
    frames = []
    for b in args.budgets:
        keep = args.out / f"x{b}"
        config = budget_config(b, args, base)
        run = {"revision": revision(), "config": config}
        if not kept_run_matches(keep, run):
            run_budget(b, config, args)
            (keep / "run.yaml").write_text(yaml.safe_dump(run, sort_keys=False))
        frames.append(summary_rows(b, keep))
        table = pd.concat(frames, ignore_index=True)
        table = table.sort_values("budget", key=lambda b: b.str.rstrip("x").astype(int), kind="stable")
        table.to_csv(args.out / "learning_curve.csv", index=False)
        (args.out / "learning_curve.md").write_text(table.to_markdown(index=False, floatfmt=".3f") + "\n")
        print(frames[-1].to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)
        seconds = pd.read_csv(keep / "training_seconds.csv")
        print("training seconds: " + ", ".join(f"{r.model} {r.seconds:.0f}" for r in seconds.itertuples()),
              flush=True)


if __name__ == "__main__":
    main()
