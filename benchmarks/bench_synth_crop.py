"""Time synthetic generation and cropping per subject (UK Biobank geometry by default).

Usage: python benchmarks/bench_synth_crop.py [--subjects 3] [--frames 50]
Prints seconds per subject for generation, crop and label crop, and the centring error.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from cinerecon.io.subject import VIEWS
from cinerecon.preprocess.crop import crop_label_files, crop_subject_files
from cinerecon.synth.cohort import generate_subject
from cinerecon.synth.scanner import AcquisitionConfig


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--frames", type=int, default=50)
    args = parser.parse_args()
    acq = AcquisitionConfig(n_frames=args.frames)
    gen, crop, crop_lab, errors = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.subjects):
            out = Path(tmp) / f"S{i}"
            t0 = time.perf_counter()
            files = generate_subject(f"S{i}", 1, i, out, acq)
            t1 = time.perf_counter()
            crop_subject_files(f"S{i}", {v: files[v] for v in VIEWS},
                               {v: out / "crop" / f"{v}.nii.gz" for v in VIEWS},
                               out / "crop" / "crop.json", (128, 128), (128, 128))
            t2 = time.perf_counter()
            report = crop_label_files(f"S{i}", {v: files[f"label_{v}"] for v in VIEWS},
                                      out / "crop" / "crop.json",
                                      {v: out / "crop" / f"label_{v}.nii.gz" for v in VIEWS},
                                      out / "crop" / "centring.json")
            t3 = time.perf_counter()  # timed step by step, so not via benchmarks/common.py
            gen.append(t1 - t0)
            crop.append(t2 - t1)
            crop_lab.append(t3 - t2)
            errors.append(report["centring_error_inplane_mm"])
    print(f"subjects: {args.subjects}, frames: {args.frames}, SAX matrix {acq.sax_matrix}")
    print(f"generate    s/subject: mean {np.mean(gen):.2f}  max {np.max(gen):.2f}")
    print(f"crop        s/subject: mean {np.mean(crop):.2f}  max {np.max(crop):.2f}")
    print(f"crop labels s/subject: mean {np.mean(crop_lab):.2f}  max {np.max(crop_lab):.2f}")
    print(f"centring error in-plane mm: mean {np.mean(errors):.2f}  max {np.max(errors):.2f}")


if __name__ == "__main__":
    main()
