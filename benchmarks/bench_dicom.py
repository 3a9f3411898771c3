"""Time ingest of UK Biobank-style cine DICOM zips per subject (UK Biobank geometry by default).

Usage: python benchmarks/bench_dicom.py [--subjects 3] [--frames 50] [--layouts separate mixed-rle]
Generates synthetic subjects, writes them as `{eid}_20209_2_0.zip` / `{eid}_20208_2_0.zip`
in each layout (separate or mixed series, with or without RLE Lossless pixel data), then
times `ingest_ukbb_zips` per subject and checks the round trip (pixels exact, affine 1e-4 mm).
Only generation is shared with the other benchmarks, so benchmarks/common.py (which also
crops) is not used.
"""

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from cinerecon.io.subject import VIEWS
from cinerecon.io.ukbb_dicom import ingest_ukbb_zips
from cinerecon.synth.cohort import generate_subject
from cinerecon.synth.dicom import write_ukbb_zips
from cinerecon.synth.scanner import AcquisitionConfig

LAYOUTS = {
    "separate": {},
    "separate-rle": {"compress": True},
    "mixed": {"sax_layout": "mixed", "lax_layout": "mixed", "shuffle": True},
    "mixed-rle": {"sax_layout": "mixed", "lax_layout": "mixed", "shuffle": True, "compress": True},
}


def same(reference: Path, out: Path) -> bool:
    for view in VIEWS:
        a, b = nib.load(reference / f"{view}.nii.gz"), nib.load(out / f"{view}.nii.gz")
        if not (np.array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))
                and np.abs(a.affine - b.affine).max() < 1e-4):
            return False
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--layouts", nargs="+", default=["separate", "mixed-rle"], choices=list(LAYOUTS))
    args = parser.parse_args()
    acq = AcquisitionConfig(n_frames=args.frames)
    times = {name: {"write": [], "ingest": [], "mb": [], "files": []} for name in args.layouts}
    exact = True
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subjects = []
        t0 = time.perf_counter()
        for i in range(args.subjects):
            eid = f"{1000000 + i}"
            generate_subject(eid, 2024, i, tmp / "nifti" / eid, acq)
            subjects.append(eid)
        generation = (time.perf_counter() - t0) / args.subjects
        for name in args.layouts:
            for i, eid in enumerate(subjects):
                t0 = time.perf_counter()
                zips = write_ukbb_zips(tmp / "nifti" / eid, eid, tmp / name / "zips", LAYOUTS[name], seed=i)
                t1 = time.perf_counter()
                out = tmp / name / eid
                meta = ingest_ukbb_zips(eid, list(zips.values()), out, out / "meta.json")
                t2 = time.perf_counter()
                exact &= same(tmp / "nifti" / eid, out)
                times[name]["write"].append(t1 - t0)
                times[name]["ingest"].append(t2 - t1)
                times[name]["mb"].append(sum(z.stat().st_size for z in zips.values()) / 1e6)
                sa = meta["views"]["sa"]["shape"]
                times[name]["files"].append(sa[2] * sa[3] + 3 * args.frames)
    print(f"subjects: {args.subjects}, frames: {args.frames}, SAX matrix {acq.sax_matrix}, "
          f"LAX matrix {acq.lax_matrix}; generation {generation:.1f} s/subject")
    for name, t in times.items():
        print(f"{name:13s} ingest s/subject: mean {np.mean(t['ingest']):.2f}  max {np.max(t['ingest']):.2f}"
              f"  ({np.mean(t['files']):.0f} DICOM files, {np.mean(t['mb']):.1f} MB of zips; "
              f"write {np.mean(t['write']):.2f} s)")
    print(f"round trip exact (pixels, affine 1e-4 mm): {exact}")


if __name__ == "__main__":
    main()
