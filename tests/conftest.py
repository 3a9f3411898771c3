import numpy as np
import pytest

from cinerecon.synth.cohort import generate_subject
from cinerecon.synth.scanner import AcquisitionConfig

# Small but complete acquisitions keep the tests fast; geometry is UK Biobank-like.
SMALL = dict(n_frames=20, sax_matrix=(112, 112), lax_matrix=(120, 120))
# No breath-hold motion and labels exactly the anatomy's centre plane (no annotator).
EXACT_LABELS = dict(sax_shift_rms_mm=0.0, lax_shift_rms_mm=0.0, sax_through_plane_rms_mm=0.0,
                    lax_through_plane_rms_mm=0.0, rotation_rms_deg=0.0, annotation_sd_mm=0.0,
                    lax_muscles_as_myocardium=False)


@pytest.fixture(scope="session")
def small_acq():
    return AcquisitionConfig(**SMALL)


@pytest.fixture(scope="session")
def synth_subject(tmp_path_factory, small_acq):
    """One generated subject with default breath-hold shifts."""
    out = tmp_path_factory.mktemp("synth") / "SYN0003"
    return generate_subject("SYN0003", 11, 3, out, small_acq)


@pytest.fixture(scope="session")
def smooth_subject(tmp_path_factory):
    """The first wave's smooth phantom: in-plane breath-hold shifts only, exact labels."""
    out = tmp_path_factory.mktemp("synth") / "SYN0003"
    return generate_subject("SYN0003", 11, 3, out, AcquisitionConfig.from_dict({"phantom": "smooth", **SMALL}))


@pytest.fixture(scope="session")
def unshifted_subject(tmp_path_factory):
    """A subject with no breath-hold motion and exact labels: LAX labels equal the truth on
    the LAX plane."""
    acq = AcquisitionConfig(**SMALL, **EXACT_LABELS)
    out = tmp_path_factory.mktemp("synth") / "SYN0001"
    return generate_subject("SYN0001", 5, 1, out, acq)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
