"""What resumption saves, and what the journal costs: the CPU chain of shard stages (synth,
ingest, crop, align, recon nn, evaluate nn) over one shard of synthetic subjects, run three
ways in one process:

1. from scratch (the journal written as it goes);
2. again with nothing changed (a retried job whose subjects all finished: every subject is
   checked against its journal and reused);
3. after a SIGKILL-like stop at subject k of each stage's first run: the journals of the
   first k-1 subjects are kept and the rest recomputed.

Prints seconds per stage for each. Usage: python benchmarks/bench_resume.py [--subjects 8]
"""

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

from cinerecon.journal import Journal
from cinerecon.layout import Layout
from cinerecon.stages import (
    align_outputs,
    align_run,
    crop_outputs,
    crop_run,
    evaluate_outputs,
    evaluate_run,
    ingest_outputs,
    ingest_run,
    recon_outputs,
    recon_run,
    synth_outputs,
    synth_run,
)
from cinerecon.workflow import shard_stage


def stages(layout: Layout, subjects: list[str]):
    """(name, upstream stage, outputs, run, settings) in pipeline order."""
    index = {s: i for i, s in enumerate(subjects)}
    return [
        ("synth", None, synth_outputs, synth_run,
         {"seed": 1, "index": index, "acquisition": {}, "dicom": None, "label_frames": "ed_es"}),
        ("ingest", "synth", ingest_outputs, ingest_run, {"sources": {s: str(layout.synthetic(s)) for s in subjects}}),
        ("crop", "ingest", crop_outputs, crop_run, {"sax_size": [128, 128], "lax_size": [128, 128]}),
        ("align", "crop", align_outputs, align_run, {"method": "intensity"}),
        ("recon-nn", "align", recon_outputs, recon_run, {"method": "nn", "target_spacing_mm": 1.0}),
        ("eval-nn", "recon-nn", evaluate_outputs, evaluate_run, {"method": "nn", "truth": True}),
    ]


def run_chain(results: Path, subjects: list[str]) -> dict:
    layout = Layout(results)
    lax = {"2ch": "ukbb", "3ch": "ukbb", "4ch": "ukbb"}
    shard = {"subjects": subjects, "labelled": subjects, "lax": {s: lax for s in subjects}}
    seconds = {}
    for name, upstream, outputs, run, settings in stages(layout, subjects):
        manifest = results / "shards" / name / "b0000.tsv"
        inputs = [results / "shards" / upstream / "b0000.tsv"] if upstream else []
        if name == "eval-nn":
            inputs += [results / "shards/crop/b0000.tsv", results / "shards/synth/b0000.tsv"]
        start = time.perf_counter()
        shard_stage(results / "logs" / f"{name}.log", name, shard, manifest, inputs, outputs, run, **settings)
        seconds[name] = time.perf_counter() - start
    return seconds


def keep_first_journal_lines(results: Path, k: int) -> None:
    """What a kill during subject k+1 leaves: journals of k subjects, no manifests."""
    for journal in results.glob("shards/*/*.journal"):
        lines = journal.read_text().splitlines()[:k]
        journal.write_text("".join(line + "\n" for line in lines))
        journal.with_suffix(".tsv").unlink()
    assert all(len(Journal(j.with_suffix(".tsv")).load()) == k for j in results.glob("shards/*/*.journal"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    subjects = [f"SYN{i:04d}" for i in range(args.subjects)]
    k = args.subjects // 2
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        scratch = run_chain(results, subjects)
        unchanged = run_chain(results, subjects)
        keep_first_journal_lines(results, k)
        resumed = run_chain(results, subjects)
        shutil.rmtree(results)
    print(f"{args.subjects} synthetic subjects (UK Biobank geometry) in one shard; seconds per stage")
    print(f"{'stage':10s} {'scratch':>9s} {'unchanged':>10s} {f'resumed at {k + 1}':>14s}")
    for name in scratch:
        print(f"{name:10s} {scratch[name]:9.2f} {unchanged[name]:10.2f} {resumed[name]:14.2f}")
    total = [sum(t.values()) for t in (scratch, unchanged, resumed)]
    print(f"{'total':10s} {total[0]:9.2f} {total[1]:10.2f} {total[2]:14.2f}")


if __name__ == "__main__":
    main()
