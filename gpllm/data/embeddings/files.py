"""Readers and writers of the gene-embedding file formats the paper uses.

* GenePT pickle: ``dict`` gene symbol -> 1536-d vector (list or ndarray).
  Read with a restricted unpickler that refuses anything but plain containers
  and numpy arrays (a pickle can otherwise run code).
* Tables: CSV/TSV (optionally .gz) or parquet, one row per gene, a symbol
  column (default: the first, if it holds strings) and one column per dimension.
* UniProt ProtT5 ``per-protein.h5``: one 1024-d dataset per UniProt accession,
  with a gene symbol -> accession map from a UniProt ID-mapping file: either
  the 3-column ``*_idmapping.dat[.gz]`` (accession, ID type, ID; rows of type
  'Gene_Name') or a headered TSV from the ID-mapping service ('From'/'Entry',
  or 'Gene Names (primary)'/'Entry'; reviewed entries first if 'Reviewed' is given).
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from gpllm.atomic import atomic_write, write_bytes_from, write_frame, write_text
from gpllm.data.embeddings.vectors import GeneVectors
from gpllm.data.validate import preview
from gpllm.errors import CorruptFileError, DataError, EmbeddingError, GPLLMError, InputError, MissingFileError

log = logging.getLogger(__name__)

GENEPT_DIM = 1536
PROTT5_DIM = 1024


def _exists(path: Path) -> Path:
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    return path


# ------------------------------------------------------------------ pickles
class _PlainUnpickler(pickle.Unpickler):
    """Unpickler that only builds containers, numbers, strings and numpy arrays."""

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            # protocol 5 rebuilds arrays from a buffer, protocol 2 encodes bytes as text
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
            ("collections", "OrderedDict"),
        }
    )

    def __init__(self, file, where: str) -> None:
        super().__init__(file)
        self.where = where

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise CorruptFileError(
            f"{self.where}: pickle refers to {module}.{name}; an embedding pickle holds only "
            "a dict of vectors, so it was not loaded"
        )


def _vectors_from_dict(d: Mapping, where: str, dim: int | None) -> GeneVectors:
    if not isinstance(d, Mapping) or not d:
        raise EmbeddingError(f"{where}: expected a non-empty dict gene symbol -> vector, got {type(d).__name__}")
    names, rows, bad = [], [], []
    for k, v in d.items():
        try:  # strings, ragged lists, dicts are not vectors
            arr = np.array([]) if isinstance(v, (str, bytes)) else np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            arr = np.array([])
        if arr.ndim != 1 or arr.size == 0:
            bad.append(k)
            continue
        names.append(str(k))
        rows.append(arr)
    if bad:
        raise EmbeddingError(f"{where}: {len(bad)} entries are not 1-D numeric vectors: {preview(bad)}")
    lens = np.array([r.shape[0] for r in rows])
    want = dim if dim is not None else int(np.bincount(lens).argmax())
    wrong = [n for n, L in zip(names, lens, strict=True) if L != want]
    if wrong:
        got = sorted(set(int(x) for x in lens[lens != want]))
        raise EmbeddingError(
            f"{where}: {len(wrong)} vector(s) are not {want}-dimensional (lengths {got[:5]}): {preview(wrong)}"
        )
    return GeneVectors(tuple(names), np.stack(rows), where)


def load_genept_pickle(path: str | Path, dim: int | None = None) -> GeneVectors:
    """GenePT-style pickle (dict symbol -> vector) as :class:`GeneVectors` (N, D).

    ``dim`` (e.g. :data:`GENEPT_DIM` for the published ada-002 file) is the
    required length; without it all vectors must share the most common
    length. All-zero vectors are placeholders, not genes: dropped and logged.
    """
    path = _exists(Path(path))
    try:
        with path.open("rb") as f:
            d = _PlainUnpickler(f, str(path)).load()
    except GPLLMError:
        raise
    except Exception as err:  # EOFError, UnpicklingError, ... for truncated files
        raise CorruptFileError(f"{path}: not a readable pickle ({type(err).__name__}: {err})") from err
    return _vectors_from_dict(d, str(path), dim).drop_zero_rows()


def write_genept_pickle(path: str | Path, vectors: GeneVectors) -> Path:
    """Write ``vectors`` as GenePT does: a pickled dict symbol -> list of floats."""
    as_dict = {n: [float(x) for x in row] for n, row in zip(vectors.names, vectors.X, strict=True)}
    return write_bytes_from(path, lambda f: pickle.dump(as_dict, f, protocol=4))


# ------------------------------------------------------------------- tables
def _read_polars(path: Path, what: str, read, **kw):
    """``read(path, **kw)`` (a polars reader), any failure as :class:`CorruptFileError`."""
    try:
        return read(path, **kw)
    except Exception as err:  # polars raises its own ComputeError, NoDataError, ...
        raise CorruptFileError(f"{path}: cannot be read as {what} ({type(err).__name__}: {err})") from err


def _read_frame(path: Path):
    import polars as pl

    name = path.name.lower()
    if name.endswith(".parquet"):
        return _read_polars(path, "parquet", pl.read_parquet)
    sep = "\t" if name.endswith((".tsv", ".tsv.gz", ".txt", ".txt.gz")) else ","
    return _read_polars(path, "a table", pl.read_csv, separator=sep, infer_schema_length=1000)


def load_table(path: str | Path, index_col: str | None = None, dim: int | None = None) -> GeneVectors:
    """A CSV/TSV(.gz)/parquet table of vectors as :class:`GeneVectors`.

    ``index_col`` names the gene-symbol column (default: the first column, if
    it holds strings); every other column must be numeric. All-zero rows (such
    as GenePT's 'ctrl' row) are dropped and logged.
    """
    import polars as pl

    path = _exists(Path(path))
    df = _read_frame(path)
    if index_col is None:
        first = df.columns[0]
        if df.schema[first] != pl.String:
            raise EmbeddingError(f"{path}: first column {first!r} is not a gene-symbol column; pass index_col")
        index_col = first
    if index_col not in df.columns:
        raise EmbeddingError(f"{path}: no column {index_col!r}; columns: {preview(df.columns)}")
    if df[index_col].null_count():
        raise EmbeddingError(f"{path}: {df[index_col].null_count()} row(s) have no gene symbol in column {index_col!r}")
    values = df.drop(index_col)
    non_num = [c for c, t in values.schema.items() if not t.is_numeric()]
    if non_num:
        raise EmbeddingError(f"{path}: non-numeric column(s) {preview(non_num)}")
    X = values.to_numpy().astype(np.float64)
    names = tuple(str(x) for x in df[index_col].to_list())
    vec = GeneVectors(names, X, str(path)).check_dim(dim)
    return vec.drop_zero_rows()


def write_table(path: str | Path, vectors: GeneVectors) -> Path:
    """Write ``vectors`` as parquet (``.parquet``) or CSV: column 'gene' then 0..D-1."""
    import polars as pl

    path = Path(path)
    cols = {"gene": list(vectors.names)}
    cols.update({str(j): vectors.X[:, j] for j in range(vectors.dim)})
    return write_frame(path, pl.DataFrame(cols))


# -------------------------------------------------------------- UniProt/ProtT5
_SYMBOL_COLS = ("From", "Gene Names (primary)", "Gene Names", "gene", "symbol")
_ACCESSION_COLS = ("Entry", "To", "accession", "Accession")


def read_uniprot_idmapping(
    path: str | Path, symbol_col: str | None = None, accession_col: str | None = None
) -> dict[str, tuple[str, ...]]:
    """Gene symbol -> UniProt accessions (preferred first), read with polars.

    Accepts UniProt's 3-column ``*_idmapping.dat[.gz]`` (rows of type
    'Gene_Name') or a headered TSV from the ID-mapping service.
    """
    import polars as pl

    path = _exists(Path(path))
    head = _read_polars(path, "TSV", pl.read_csv, separator="\t", has_header=False, n_rows=1, infer_schema=False)
    first = [str(x) for x in head.row(0)]
    known = set(_SYMBOL_COLS) | set(_ACCESSION_COLS)
    # idmapping.dat has no header: 3 columns none of which is a known column name
    if symbol_col is None and accession_col is None and len(first) == 3 and not known & set(first):
        df = _read_polars(
            path,
            "UniProt idmapping.dat",
            pl.read_csv,
            separator="\t",
            has_header=False,
            new_columns=["acc", "type", "id"],
            infer_schema=False,
            quote_char=None,
        )
        df = df.filter(pl.col("type") == "Gene_Name").select(sym="id", acc="acc")
    else:
        df = _read_polars(path, "TSV", pl.read_csv, separator="\t", infer_schema=False, quote_char=None)
        sc = symbol_col or next((c for c in _SYMBOL_COLS if c in df.columns), None)
        ac = accession_col or next((c for c in _ACCESSION_COLS if c in df.columns), None)
        missing = [w for w, c in (("gene symbol", sc), ("accession", ac)) if c is None or c not in df.columns]
        if missing:
            raise DataError(
                f"{path}: no {' or '.join(missing)} column (looked for {symbol_col or list(_SYMBOL_COLS)} / "
                f"{accession_col or list(_ACCESSION_COLS)}); columns: {preview(df.columns, 20)}"
            )
        if "Reviewed" in df.columns:  # Swiss-Prot entries before TrEMBL ones
            df = df.with_row_index("_i").sort([pl.col("Reviewed").str.to_lowercase() != "reviewed", "_i"])
        df = df.select(sym=pl.col(sc).str.split(" ").list.first(), acc=pl.col(ac))
    df = df.drop_nulls()
    out: dict[str, list[str]] = {}
    for sym, acc in df.iter_rows():
        out.setdefault(sym, []).append(acc)
    if not out:
        raise DataError(f"{path}: no gene symbol -> accession pairs found")
    return {k: tuple(v) for k, v in out.items()}


def write_uniprot_idmapping(path: str | Path, mapping: Mapping[str, Sequence[str]]) -> Path:
    """Write symbol -> accessions in UniProt's 3-column idmapping.dat layout."""
    return write_text(path, "".join(f"{acc}\tGene_Name\t{sym}\n" for sym, accs in mapping.items() for acc in accs))


def load_prott5_h5(
    path: str | Path,
    id_mapping: Mapping[str, Sequence[str]] | str | Path | None = None,
    genes: Sequence[str] | None = None,
    dim: int | None = PROTT5_DIM,
) -> GeneVectors:
    """UniProt ``per-protein.h5`` as :class:`GeneVectors` (N, ``dim``) keyed by gene symbol.

    ``id_mapping`` (a dict or a file for :func:`read_uniprot_idmapping`) maps
    symbols to accessions; the first accession present in the file is used
    and the number of symbols with several is logged. Without it, names are
    the accessions. ``genes`` restricts reading to those symbols (fast); genes
    without a protein embedding are left out here and counted by
    :func:`gpllm.data.embeddings.assemble.align`.
    """
    path = _exists(Path(path))
    if isinstance(id_mapping, (str, Path)):
        id_mapping = read_uniprot_idmapping(id_mapping)
    try:
        pairs, rows, n_multi = _read_prott5(path, id_mapping, genes)
    except GPLLMError:
        raise
    except Exception as err:  # h5py raises OSError/KeyError/RuntimeError on damaged files
        raise CorruptFileError(f"{path}: not a readable HDF5 embedding file ({type(err).__name__}: {err})") from err
    bad = [
        f"{sym} ({acc}) shape {r.shape}" if sym != acc else f"{acc} shape {r.shape}"
        for (sym, acc), r in zip(pairs, rows, strict=True)
        if r.ndim != 1 or (dim is not None and r.shape[0] != dim)
    ]
    if bad:
        want = f"{dim}-dimensional" if dim is not None else "1-D"
        raise EmbeddingError(f"{path}: {len(bad)} embedding(s) are not {want} vectors: {preview(bad)}")
    if dim is None and len({r.shape[0] for r in rows}) > 1:
        raise EmbeddingError(f"{path}: embeddings differ in length: {preview(sorted({r.shape[0] for r in rows}))}")
    if n_multi:
        log.info("%s: %d gene(s) map to several accessions in the file: used the first listed", path, n_multi)
    return GeneVectors(tuple(s for s, _ in pairs), np.stack(rows), str(path))


def _read_prott5(
    path: Path, id_mapping: Mapping[str, Sequence[str]] | None, genes: Sequence[str] | None
) -> tuple[list[tuple[str, str]], list[np.ndarray], int]:
    """((symbol, accession) pairs, their raw datasets, number of symbols with several accessions)."""
    import h5py

    with h5py.File(path, "r") as f:
        keys = set(f.keys())
        if id_mapping is None:
            pairs = [(k, k) for k in (genes if genes is not None else sorted(keys)) if k in keys]
            n_multi = 0
        else:
            pairs, n_multi = [], 0
            for sym in genes if genes is not None else list(id_mapping):
                accs = [a for a in id_mapping.get(sym, ()) if a in keys]
                if accs:
                    pairs.append((sym, accs[0]))
                    n_multi += len(accs) > 1
        if not pairs:
            raise EmbeddingError(
                f"{path}: none of the requested genes has a protein embedding "
                f"(file holds {len(keys)} accessions, e.g. {preview(sorted(keys)[:5])})"
            )
        rows = []
        for sym, acc in pairs:
            node = f[acc]
            if not isinstance(node, h5py.Dataset):
                raise CorruptFileError(f"{path}: {acc!r} (gene {sym!r}) is a group, not an embedding dataset")
            try:
                rows.append(np.asarray(node[()], dtype=np.float64))
            except Exception as err:  # a damaged chunk fails only when read
                raise CorruptFileError(f"{path}: dataset {acc!r} (gene {sym!r}) unreadable ({err})") from err
    return pairs, rows, n_multi


def write_prott5_h5(path: str | Path, accessions: Sequence[str], X: np.ndarray) -> Path:
    """Write UniProt's per-protein layout: one float32 dataset (D,) per accession."""
    import h5py

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            for acc, row in zip(accessions, np.asarray(X, dtype=np.float32), strict=True):
                f.create_dataset(acc, data=row)

    return atomic_write(path, write)


_PICKLE = (".pickle", ".pkl")
_H5 = (".h5", ".hdf5")


def load_vectors(path: str | Path, **kw) -> GeneVectors:
    """Dispatch on the file name: .pickle/.pkl, .h5/.hdf5 (ProtT5), else a table."""
    name = Path(path).name.lower()
    if name.endswith(_PICKLE):
        return load_genept_pickle(path, **kw)
    if name.endswith(_H5):
        return load_prott5_h5(path, **kw)
    return load_table(path, **kw)


def write_vectors(path: str | Path, vectors: GeneVectors) -> Path:
    """Write ``vectors`` so that :func:`load_vectors` reads them back: a GenePT-style
    pickle for .pickle/.pkl, else a parquet/CSV table (h5 needs accessions: use
    :func:`write_prott5_h5`)."""
    name = Path(path).name.lower()
    if name.endswith(_H5):
        raise InputError(f"{path}: write gene vectors as .pickle, .parquet or .csv; .h5 holds accessions")
    return write_genept_pickle(path, vectors) if name.endswith(_PICKLE) else write_table(path, vectors)
