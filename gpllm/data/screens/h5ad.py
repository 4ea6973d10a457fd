"""Opening h5ad files with errors that name the file.

h5py reports a truncated download as "Unable to synchronously open file
(truncated file: eof = ...)"; this module turns that, and every other failure to
read an AnnData, into :class:`~gpllm.errors.CorruptFileError` with the path in
the message, so a half-downloaded 10 GB screen is never mistaken for data.
"""

from __future__ import annotations

from pathlib import Path

from gpllm.data.validate import check_indptr, check_sparse_layout
from gpllm.errors import CorruptFileError, GPLLMError, MissingFileError

_REQUIRED = ("X", "obs", "var")


def read_h5ad(path: str | Path, backed: bool = False):
    """Read an AnnData from ``path``; ``backed=True`` keeps X on disk (mode 'r').

    Raises :class:`MissingFileError` if the file does not exist and
    :class:`CorruptFileError` if it is not a readable AnnData (truncated, not
    HDF5, lacking the X/obs/var groups, or with a broken sparse layout).
    """
    import anndata as ad
    import h5py

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such h5ad file")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in _REQUIRED if k not in f]
        if missing:
            raise CorruptFileError(f"{path}: not an AnnData h5ad, missing group(s) {', '.join(missing)}")
        adata = ad.read_h5ad(path, backed="r" if backed else None)
        _check_layout(adata, backed, str(path))
        return adata
    except GPLLMError:
        raise
    except Exception as err:  # h5py/anndata raise OSError, KeyError, ValueError, ...
        raise CorruptFileError(
            f"{path}: cannot be read as h5ad ({type(err).__name__}: {err}); "
            "it is truncated or corrupt: delete it and fetch it again"
        ) from err


def _check_layout(adata, backed: bool, where: str) -> None:
    """Validate sparse X before anything indexes it (a damaged file can crash scipy).

    In memory: the full CSR/CSC check. Backed: the row pointer, read once (N + 1
    integers); each chunk's column indices are checked when it is read.
    """
    if not backed:
        check_sparse_layout(adata.X, where)
        return
    group = getattr(adata.X, "group", None)
    if group is None:  # dense X: nothing to check
        return
    n_major = adata.shape[0] if adata.X.format == "csr" else adata.shape[1]
    nnz = group["data"].shape[0]
    if group["indices"].shape[0] != nnz:
        raise CorruptFileError(f"{where}: X/indices and X/data differ in length; the file is corrupt")
    check_indptr(group["indptr"][:], n_major, nnz, where)
