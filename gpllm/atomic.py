"""Files written whole or not at all, with the permissions a plain ``open`` would give.

Every file gpllm writes (results, run manifests, caches, fitted models, tables,
figures, h5ad, downloads) goes through :func:`atomic_write`: the content goes to
a temporary name in the same folder, is flushed to the disk (``fsync``), and is
then renamed into place (``os.replace`` is atomic on POSIX), so a killed process
or a full disk leaves either the old file or the new one, never half of one.
A write that fails is one :class:`~gpllm.errors.WriteError` naming the path and
the cause; the temporary file is removed and an earlier file at the path is kept.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpllm.errors import GPLLMError, WriteError

#: Causes worth naming in words; any other errno is reported by its ``strerror``.
_CAUSES = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.EFBIG: "file too large for the file system",
    errno.EIO: "input/output error",
}

#: How an errno survives in the messages of writers that do not raise OSError with
#: ``errno`` set (polars: '... (os error 28)', h5py: '[Errno 28] ...', 'errno = 28').
_ERRNO_IN_TEXT = re.compile(r"os error (\d+)|\[Errno (\d+)\]|errno = (\d+)")


def _umask() -> int:
    """The process umask, read without changing it where Linux says it (/proc), since
    setting it to read it back would race with other threads creating files."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def io_errno(err: BaseException) -> int | None:
    """The operating system's error number behind ``err``, or None if it is not an I/O failure.

    Writers wrap the OS error differently (polars raises ``ComputeError`` for parquet),
    so the number is looked for on the exception, then in its text, then in its causes."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno:
            return err.errno
        match = _ERRNO_IN_TEXT.search(str(err))
        if match:
            return int(next(g for g in match.groups() if g))
        err = err.__cause__ or err.__context__
    return None


def _disk_full(folder: Path) -> bool:
    """Whether the file system holding ``folder`` has no block left for this user."""
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def failure_errno(err: BaseException, folder: Path) -> int | None:
    """:func:`io_errno`, or ENOSPC when the writer's error carries no number (polars' parquet
    writer reports a full disk as 'Invalid thrift: transport error') and ``folder``'s disk is full."""
    code = io_errno(err)
    return errno.ENOSPC if code is None and _disk_full(folder) else code


def describe_cause(err: BaseException, folder: Path | None = None) -> str:
    """A few words on why an I/O call failed: 'disk full', 'permission denied', ..."""
    code = io_errno(err) if folder is None else failure_errno(err, folder)
    if code is None:
        return f"{type(err).__name__}: {err}"
    return _CAUSES.get(code, os.strerror(code))


def _fsync(path: str | Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` on a temporary file beside ``path``, flush it to disk, then rename it into place.

    The file gets the permissions a plain ``open`` would give (0666 less the umask),
    not ``mkstemp``'s private 0600. An I/O failure (disk full, permission, read-only)
    raises :class:`WriteError` naming ``path`` and the cause; any other exception
    from ``write`` (a bug, a gpllm error) passes through. Either way the temporary
    file is gone and a file already at ``path`` is untouched.
    """
    path = Path(path)
    existed = path.exists()
    tmp = failure = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(Path(tmp))
        _fsync(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        tmp = None
        try:
            _fsync(path.parent, directory=True)  # the rename itself survives a power cut
        except OSError:
            pass  # some file systems cannot fsync a folder; the rename has happened
    except GPLLMError:
        raise
    except Exception as err:
        if failure_errno(err, path.parent) is None:
            raise
        kept = f"; the earlier {path.name} is unchanged" if existed else ""
        failure = (f"could not write {path}: {describe_cause(err, path.parent)}{kept}", traceback.format_exc())
        # The writer's half-written objects (h5py's) complain again as they are freed, when
        # this clause drops ``err``: mute that until they are collected (see below).
        saved_hook, sys.unraisablehook = sys.unraisablehook, lambda unraisable: None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    if failure is not None:
        try:
            gc.collect()
        finally:
            sys.unraisablehook = saved_hook
        raise WriteError(failure[0], path=path, details=failure[1])
    return path


def append_text(path: str | Path, text: str) -> Path:
    """Append ``text`` to ``path`` (logs that grow line by line; POSIX appends a short write
    whole); an I/O failure is a :class:`WriteError` naming the path and the cause."""
    path = Path(path)
    try:
        with open(path, "a", encoding="utf-8") as out:
            out.write(text)
    except OSError as err:
        raise WriteError(f"could not write {path}: {describe_cause(err, path.parent)}", path=path) from err
    return path


def write_bytes_from(path: str | Path, save: Callable[[Any], None]) -> Path:
    """:func:`atomic_write` for writers that take an open binary file (``np.savez`` would
    append '.npz' to a bare name; ``savefig`` would guess the format from the suffix)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            save(handle)

    return atomic_write(path, write)


def write_text(path: str | Path, text: str) -> Path:
    """``text`` (UTF-8) to ``path``, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    """``obj`` as indented, key-sorted JSON at ``path``, atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True))


def write_frame(path: str | Path, frame: Any) -> Path:
    """A polars DataFrame as parquet (``.parquet``) or CSV (any other suffix), atomically."""
    path = Path(path)
    parquet = path.name.lower().endswith(".parquet")
    return atomic_write(path, lambda tmp: frame.write_parquet(tmp) if parquet else frame.write_csv(tmp))


def write_h5ad(path: str | Path, adata: Any, **dataset_kwargs: Any) -> Path:
    """``adata`` as an h5ad file, atomically (``dataset_kwargs``: h5py's, e.g. ``compression="gzip"``).

    The HDF5 bytes are built in memory and then written as plain bytes: HDF5 that meets a
    full disk mid-file stays half-open inside the process ('Can't close file') and crashes
    it later (a segmentation fault at the next HDF5 close), so it never writes to disk here."""
    import io

    import anndata as ad
    import h5py

    adata.strings_to_categoricals()  # as AnnData.write_h5ad does
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        ad.io.write_elem(h5, "/", adata, dataset_kwargs=dataset_kwargs)
    return atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))
