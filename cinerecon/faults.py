"""What a failure in a shard job means: the subject's data, the machine, or the code.

- input: the subject's own data cannot be used (InputError). The subject fails alone, the
  shard carries on, and a rerun with the same inputs does not try it again.
- environment: out of memory, I/O errors (a full disk, an NFS stale handle, a missing
  upstream file), GPU runtime errors, signals. Nothing is wrong with the subject: the job
  fails so the scheduler retries it, and the retry redoes exactly the unfinished subjects.
- internal: any other exception (a bug met on this subject's data). The subject fails
  alone with the traceback in the log, like an input fault, so one odd subject never holds
  up a week-long cohort run.
"""

from __future__ import annotations

import errno
import re
import signal

INPUT, ENVIRONMENT, INTERNAL = "input", "environment", "internal"

# OS errors that say something about the machine, not the file's content: an InputError
# raised *from* one of these (e.g. "cannot read NIfTI header" over a stale NFS handle) is
# an environment fault all the same. A permission error is the file system's too: fixing it
# (chmod) does not change the file's size or mtime, so a remembered input fault would stick.
TRANSIENT_ERRNOS = {getattr(errno, name) for name in (
    "EIO", "ESTALE", "ENOSPC", "EDQUOT", "ENOMEM", "EAGAIN", "ETIMEDOUT", "EBUSY", "ENFILE",
    "EMFILE", "ENETDOWN", "ENETUNREACH", "ENETRESET", "ECONNRESET", "ECONNABORTED", "EHOSTDOWN",
    "EHOSTUNREACH", "ENOLCK", "EINTR", "EROFS", "ENODEV", "ENXIO", "EACCES", "EPERM") if hasattr(errno, name)}

# RuntimeErrors raised by torch/CUDA for the device, not the data
DEVICE_MESSAGE = re.compile(r"out of memory|CUDA error|CUDA driver|cuDNN|CUBLAS|cuFFT|NCCL|"
                            r"device-side assert|HIP error|MPS backend out of memory", re.IGNORECASE)


class Terminated(BaseException):
    """The job was asked to stop (SIGTERM: a time limit, preemption, scancel)."""


def fault_class(exc: BaseException) -> str:
    """`input`, `environment` or `internal` (see the module docstring)."""
    from cinerecon.io.nifti import InputError  # (nibabel: not at DAG-building time)

    if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit, Terminated
        return ENVIRONMENT
    if isinstance(exc, InputError):
        cause = exc.__cause__
        return ENVIRONMENT if isinstance(cause, OSError) and cause.errno in TRANSIENT_ERRNOS else INPUT
    if isinstance(exc, MemoryError):
        return ENVIRONMENT
    # Any OS error with an errno (ENOENT for a missing upstream file included); gzip's
    # BadGzipFile and similar content errors carry none.
    if isinstance(exc, OSError) and exc.errno is not None:
        return ENVIRONMENT
    if isinstance(exc, RuntimeError) and DEVICE_MESSAGE.search(str(exc)):
        return ENVIRONMENT
    return INTERNAL


def raise_on_sigterm() -> None:
    """Turn SIGTERM into a Terminated exception, so a stopped job still removes the current
    subject's partial files (SIGKILL cannot be caught: the next run removes them)."""

    def handler(signum, frame):
        raise Terminated(f"received signal {signal.Signals(signum).name}")

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        pass
