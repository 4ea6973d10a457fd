"""Every error gpllm raises on purpose lives here.

All derive from :class:`GPLLMError`, and each also derives from the builtin a
caller would naturally catch (``ValueError`` for bad input, ``OSError`` for bad
files), so ``except ValueError`` keeps working in user code. Messages name the
offending array, file, gene or column, and are raised before anything is
compiled.
"""

from __future__ import annotations


class GPLLMError(Exception):
    """Base class of all gpllm errors.

    ``datasets``: where a batched computation (a chunk's CV folds) raised it, the indices
    of the datasets at fault, so that a caller can name them; empty when not known.
    """

    datasets: tuple[int, ...] = ()


class InputError(GPLLMError, ValueError):
    """An argument is malformed: wrong shape, NaN/inf, too few rows, bad value."""


class NonFiniteError(InputError):
    """An array holds NaN or inf where finite numbers are required."""


class ShapeError(InputError):
    """Arrays disagree in shape or rank."""


class CholeskyError(GPLLMError, FloatingPointError):
    """K + s2 I could not be factorised even after escalating the jitter.

    ``datasets``: the failed datasets' indices in a batched fit (:class:`GPLLMError`);
    ``dtype``: the name of the dtype the factorisation ran in (None when unknown).
    """

    def __init__(self, message: str, *, datasets: tuple[int, ...] = (), dtype: str | None = None):
        super().__init__(message)
        self.datasets, self.dtype = datasets, dtype


class NotConvergedError(GPLLMError, RuntimeError):
    """An optimiser stopped on a non-finite objective."""


class DataError(GPLLMError, ValueError):
    """A data file or table is unusable: missing column, no controls, duplicates, NaN."""


class CorruptFileError(DataError, OSError):
    """A file is truncated, corrupt, or not of the expected format."""


class ChecksumError(CorruptFileError):
    """A downloaded file's checksum does not match the registry."""


class WriteError(GPLLMError, OSError):
    """An output file could not be written (disk full, permission, read-only); ``path`` names it.

    Raised by :func:`gpllm.atomic.atomic_write`, after which the earlier file at
    ``path`` (if any) is intact and no temporary file is left behind; ``details``
    holds the writer's own traceback (``--debug`` prints it).
    """

    def __init__(self, message: str, path=None, details: str = ""):
        super().__init__(message)
        self.path = path
        self.details = details

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self):
        return type(self), (str(self), self.path, self.details)


class DownloadError(GPLLMError, OSError):
    """A remote file could not be fetched."""


class EmbeddingError(DataError):
    """Embeddings are missing, of the wrong dimension, or do not overlap the perturbations."""


class SplitError(InputError):
    """A cross-validation split is empty or malformed."""


class MemoryLimitError(InputError, MemoryError):
    """A computation would need more memory than the device has free (said before allocating)."""


class MissingFileError(DataError, FileNotFoundError):
    """A data file that was asked for does not exist."""


class WorkerError(GPLLMError, RuntimeError):
    """A worker process failed outside gpllm's own checks (crashed, killed, or a bug).

    The message is one line; ``details`` holds the worker's traceback, which the
    sweep writes to the run folder's ``errors.log``.
    """

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details

    def __reduce__(self):
        return type(self), (str(self), self.details)
