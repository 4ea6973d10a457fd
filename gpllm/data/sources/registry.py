"""The registry of real remote data files, and fetching them into a verified cache.

Each :class:`Source` records a file's URL, published size and checksums, as far
as they are known. Where a figure is unknown it is ``None`` / empty and the
entry says so: fetching such an entry needs ``allow_unverified=True`` (the CLI's
``--allow-unverified``), and its sha256 is then printed and recorded beside the
file (``<file>.sha256``) so later uses are checked against what was first
fetched (trust on first use, never silently).

Cache: ``$GPLLM_DATA`` if set, else the XDG cache dir (``~/.cache/gpllm``).
A cached file is re-verified on every :func:`fetch`; one that fails is
deleted and downloaded again, and the new download must verify.

Further entries (a mirror, a local server, your own files) can be added from a
JSON list of objects with :class:`Source`'s fields: :func:`registry` with
``extra=PATH``, or ``GPLLM_SOURCES=PATH`` for the CLI. An entry of the same
name replaces the built-in one.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from gpllm.atomic import atomic_write, describe_cause, write_text
from gpllm.data.sources.download import download, file_digests, mismatches, parse_checksum
from gpllm.errors import ChecksumError, CorruptFileError, DataError, InputError, MissingFileError

log = logging.getLogger(__name__)

#: Environment variable naming the cache directory.
CACHE_ENV = "GPLLM_DATA"


@dataclass(frozen=True)
class Source:
    """One remote file.

    name : registry key, e.g. ``"replogle-k562-bulk"``.
    url : where it is downloaded from.
    filename : its name in the cache.
    description : one line for ``gpllm data list``.
    size : published size in bytes of what ``url`` serves, None if unknown.
    checksums : ``"md5:<hex>"`` / ``"sha256:<hex>"``, all must match; empty if unknown.
    member : for a zip archive, the file inside it that :func:`fetch` extracts
        and returns (matched by base name, wherever it sits in the archive).
    notes : where the size and checksums come from, or why they are unknown.
    """

    name: str
    url: str
    filename: str
    description: str
    size: int | None = None
    checksums: tuple[str, ...] = ()
    member: str | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "checksums", tuple(self.checksums))
        for c in self.checksums:
            parse_checksum(c, f"source {self.name!r}")
        plain = (
            self.filename
            and "/" not in self.filename
            and "\\" not in self.filename
            and self.filename not in (".", "..")
        )
        if not self.name or not self.url or not plain:
            raise InputError(f"source {self.name!r}: needs a name, a url and a plain filename, got {self.filename!r}")
        if self.size is not None and self.size < 0:
            raise InputError(f"source {self.name!r}: size must be >= 0 bytes, got {self.size}")

    @property
    def verified(self) -> bool:
        """True if the registry knows a checksum for it."""
        return bool(self.checksums)

    @property
    def local_name(self) -> str:
        """Name of the file :func:`fetch` returns: the member if any, else the download."""
        return Path(self.member).name if self.member else self.filename


_FIGSHARE = "https://plus.figshare.com/ndownloader/files/"
_UNIPROT = "https://ftp.uniprot.org/pub/databases/uniprot/current_release/knowledgebase/"
_NOT_VERIFIED_HERE = "figures read from other projects' code and README, not verified here"

#: The built-in entries. Replogle et al. 2022 (figshare article 20029387, CC BY 4.0),
#: GenePT (Chen & Zou, Zenodo 10.5281/zenodo.10833191), UniProt (CC BY 4.0).
SOURCES: tuple[Source, ...] = (
    Source(
        "replogle-k562-bulk",
        _FIGSHARE + "35773070",
        "K562_essential_raw_bulk_01.h5ad",
        "Replogle 2022 K562 essential, raw pseudobulk (2285 x 8563)",
        size=79_766_954,
        checksums=(
            "md5:8321d5d3ffc99db2a5c71edca4189735",
            "sha256:80de95e54fcbca0e0537d569b43ec92fde6bd0482801505504baebe3118dcadf",
        ),
        notes="md5 as published by figshare, sha256 as pinned by another project; " + _NOT_VERIFIED_HERE,
    ),
    Source(
        "replogle-rpe1-bulk",
        _FIGSHARE + "35775581",
        "rpe1_raw_bulk_01.h5ad",
        "Replogle 2022 RPE1 essential, raw pseudobulk (2679 x 8749)",
        size=95_350_546,
        checksums=(
            "md5:74765fa87635467a869ea972356ae0e7",
            "sha256:603c655f1cfa41d649baf3ae63fca224cc11f297e40d4ed59d390b1e8d2e2db2",
        ),
        notes="md5 as published by figshare, sha256 as pinned by another project; " + _NOT_VERIFIED_HERE,
    ),
    Source(
        "replogle-k562-gwps-bulk",
        _FIGSHARE + "35774443",
        "K562_gwps_raw_bulk_01.h5ad",
        "Replogle 2022 K562 genome-wide (GWPS), raw pseudobulk (11,258 guide rows x 8,248 genes; preset replogle_bulk)",
        size=374_587_922,
        checksums=(
            "md5:4570b53c9d62ff6df281e622f0350060",
            "sha256:7cec96b3b76169abbf6b6ab9d10bf00d71d942d89e63292351f745e130b154db",
        ),
        notes="figshare file 35774443 of article 20029387; size and md5 as figshare publishes them (the same "
        "figures pinned by several projects' download scripts), sha256 as one project recorded after checking "
        "that md5, shape (11,258 x 8,248, float32) as another project's loader asserts; " + _NOT_VERIFIED_HERE,
    ),
    Source(
        "replogle-k562-cells",
        _FIGSHARE + "35773219",
        "K562_essential_raw_singlecell_01.h5ad",
        "Replogle 2022 K562 essential, raw single cells (310,385 cells, 10.7 GB)",
        size=10_661_879_995,
        checksums=("md5:4f1122ce1c7f13299a68df6459a266d3",),
        notes="md5 as published by figshare; " + _NOT_VERIFIED_HERE,
    ),
    Source(
        "replogle-rpe1-cells",
        _FIGSHARE + "35775606",
        "rpe1_raw_singlecell_01.h5ad",
        "Replogle 2022 RPE1 essential, raw single cells (several GB)",
        notes="size and checksum unknown: figshare publishes no md5 for this file (as another "
        "project reports); fetch needs --allow-unverified and records the sha256",
    ),
    Source(
        "genept-ada",
        "https://zenodo.org/records/10833191/files/GenePT_emebdding_v2.zip?download=1",
        "GenePT_emebdding_v2.zip",
        "GenePT ada-002 text embeddings of NCBI gene summaries (dict symbol -> 1536-d), from the v2 zip",
        size=574_395_233,
        checksums=("md5:3f6ce4317e3a0091978ae5cb8fbf05a3",),
        member="GenePT_gene_embedding_ada_text.pickle",
        notes="size and md5 of the zip as Zenodo publishes them (the name's typo is Zenodo's); the "
        "extracted pickle (reported 460,797,248 bytes) is checked through the zip; " + _NOT_VERIFIED_HERE,
    ),
    Source(
        "norman-gears",
        "https://dataverse.harvard.edu/api/access/datafile/6154020",
        "norman.zip",
        "Norman 2019 K562 CRISPRa singles and pairs as GEARS distributes them (91,205 cells x 5,045 genes; "
        "preset gears)",
        size=168_758_985,
        checksums=(
            "md5:cdc41d6050e619c37fd9dd44d440e2b4",
            "sha256:c1938353f6f41829c9137f073ecb843ce4d4114528b001b48312b019f739d877",
        ),
        member="perturb_processed.h5ad",
        notes="Harvard Dataverse doi:10.7910/DVN/Q2ZV3E, datafile 6154020, CC0; size and md5 of the zip as the "
        "Dataverse record publishes them (reported by several projects), sha256 as pinned by another project; the "
        "extracted h5ad (reported 2,228,610,012 bytes) is checked through the zip; " + _NOT_VERIFIED_HERE,
    ),
    Source(
        "norman-scperturb",
        "https://zenodo.org/records/10044268/files/NormanWeissman2019_filtered.h5ad?download=1",
        "NormanWeissman2019_filtered.h5ad",
        "Norman 2019 as scPerturb distributes it (111,445 cells x 33,694 genes, raw counts; preset norman_scperturb)",
        size=698_680_199,
        checksums=("md5:c870e6967d91c017d9da827bab183cd6",),
        notes="scPerturb on Zenodo (records 10044268 and 13350497); size and md5 as Zenodo publishes them; "
        + _NOT_VERIFIED_HERE,
    ),
    Source(
        "uniprot-human-prott5",
        _UNIPROT + "embeddings/UP000005640_9606/per-protein.h5",
        "per-protein.h5",
        "UniProt ProtT5 per-protein embeddings, human proteome UP000005640 (1024-d, about 47 MB)",
        notes="size and checksum unknown: the file lives under current_release and changes with "
        "each UniProt release; fetch needs --allow-unverified and records the sha256",
    ),
    Source(
        "uniprot-human-idmapping",
        _UNIPROT + "idmapping/by_organism/HUMAN_9606_idmapping.dat.gz",
        "HUMAN_9606_idmapping.dat.gz",
        "UniProt human ID mapping (accession, ID type, ID): gene symbol -> accession",
        notes="size and checksum unknown: changes with each UniProt release; fetch needs "
        "--allow-unverified and records the sha256",
    ),
)


def _as_mapping(sources) -> Mapping[str, Source]:
    out: dict[str, Source] = {}
    for s in sources:
        out[s.name] = s  # a later entry of the same name replaces an earlier one
    return MappingProxyType(out)


#: Built-in registry, name -> :class:`Source`.
REGISTRY: Mapping[str, Source] = _as_mapping(SOURCES)


def load_sources(path: str | Path) -> tuple[Source, ...]:
    """Entries from a JSON list of objects with :class:`Source`'s field names."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such sources file")
    try:
        items = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"{path}: not valid JSON ({err})") from err
    allowed = {f.name for f in fields(Source)}
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise DataError(f"{path}: expected a JSON list of objects, one per source")
    out = []
    for i, item in enumerate(items):
        unknown = sorted(set(item) - allowed)
        if unknown or not {"name", "url", "filename"} <= set(item):
            raise DataError(
                f"{path}: entry {i} ({item.get('name', '?')}): needs name, url, filename; "
                f"unknown keys {unknown}; allowed: {sorted(allowed)}"
            )
        out.append(Source(**{"description": "", **item}))
    return tuple(out)


def registry(extra: str | Path | None = None) -> Mapping[str, Source]:
    """The built-in entries plus those of the JSON file ``extra`` (which win on equal names)."""
    return REGISTRY if extra is None else _as_mapping((*SOURCES, *load_sources(extra)))


def cache_dir() -> Path:
    """``$GPLLM_DATA`` if set, else the XDG user cache dir for gpllm (``~/.cache/gpllm``)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("gpllm"))


def _usable_folder(dest: Path, is_cache: bool) -> Path:
    """``dest``, made if missing, or an InputError saying why it cannot hold downloads
    (and, for the cache, which setting chose it)."""
    chosen = (
        f" (the data cache: ${CACHE_ENV}, else ~/.cache/gpllm; set ${CACHE_ENV} or pass --dest)" if is_cache else ""
    )
    if dest.exists() and not dest.is_dir():
        raise InputError(f"{dest}{chosen} is a file, not a folder")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot make the folder {dest}{chosen}: {describe_cause(err)}") from err
    if not os.access(dest, os.W_OK | os.X_OK):
        raise InputError(f"cannot write in {dest}{chosen}: permission denied")
    return dest


def get_source(name: str, sources: Mapping[str, Source] = REGISTRY) -> Source:
    """The entry called ``name``, or :class:`InputError` listing the known names."""
    try:
        return sources[name]
    except KeyError:
        raise InputError(f"no data source named {name!r}; known: {', '.join(sorted(sources))}") from None


# ---------------------------------------------------------------- recorded hashes
def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def recorded_checksum(path: Path) -> str | None:
    """The ``sha256:<hex>`` recorded beside ``path`` at its first fetch, or None."""
    rec = _record_path(path)
    if not rec.is_file():
        return None
    words = rec.read_text().split()
    checksum = f"sha256:{words[0] if words else ''}"
    try:
        parse_checksum(checksum, str(rec))
    except InputError as err:
        raise CorruptFileError(f"{rec}: not a sha256 record ({err}); delete it and fetch again") from err
    return checksum


def _record(path: Path) -> str:
    """Write ``path``'s sha256 beside it (sha256sum's format); returns ``sha256:<hex>``."""
    digest = file_digests(path)["sha256"]
    write_text(_record_path(path), f"{digest}  {path.name}\n")
    return f"sha256:{digest}"


def is_cached(source: Source, dest: str | Path | None = None) -> bool:
    """Whether the file :func:`fetch` would return exists in ``dest`` (not re-verified here)."""
    return (Path(dest) if dest is not None else cache_dir()).joinpath(source.local_name).is_file()


# ------------------------------------------------------------------------ fetch
class Fetched(NamedTuple):
    """What :func:`fetch` did.

    path : the local file (the extracted member for an archive entry).
    downloaded : False if the cache already held a file that verified.
    checked : how it was verified, e.g. ``("md5", "sha256")``, or
        ``("recorded sha256",)``; empty if nothing could check it (first fetch
        of an entry with no known checksum).
    sha256 : ``sha256:<hex>`` when this call recorded one beside the file (first
        fetch of an unverified entry, or a freshly extracted member), else None.
    """

    path: Path
    downloaded: bool
    checked: tuple[str, ...]
    sha256: str | None = None


def _verify_cached(path: Path, expected: tuple[str, ...], size: int | None) -> bool:
    """True if the cached ``path`` matches; a mismatching file is moved aside, never deleted
    (it may be a user's own file at that name), and the move is logged."""
    if not path.is_file():
        return False
    bad = mismatches(path, expected, size)
    if not bad:
        return True
    aside = _free_name(path.with_name(path.name + ".mismatch"))
    os.replace(path, aside)  # a recorded sha256 stays: it is what the new download must match
    log.warning("%s: cached file fails its check (%s): moved to %s, fetching again", path, "; ".join(bad), aside)
    return False


def _free_name(path: Path) -> Path:
    """``path``, or ``path.1``, ``path.2``... whichever does not exist yet."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate


def _fetch_file(source: Source, dest: Path, allow_unverified: bool, progress: bool, timeout: float) -> Fetched:
    path = dest / source.filename
    recorded = recorded_checksum(path) if not source.verified else None
    expected = source.checksums or ((recorded,) if recorded else ())
    checked = tuple(parse_checksum(c)[0] for c in source.checksums) or (("recorded sha256",) if recorded else ())
    if not expected and not allow_unverified:
        raise ChecksumError(
            f"source {source.name!r} ({source.url}) has no known checksum, so a download could not be "
            "verified; pass allow_unverified=True (CLI: --allow-unverified) to fetch it anyway: its "
            f"sha256 is then printed and recorded in {_record_path(path)}"
        )
    if expected and _verify_cached(path, expected, source.size):
        return Fetched(path, False, checked)
    if not expected and path.is_file():
        # an unverified entry with no record: the file came from elsewhere; record what is there
        if source.size is not None and path.stat().st_size != source.size:
            raise ChecksumError(f"{path}: {path.stat().st_size:,} bytes, registry says {source.size:,}; delete it")
        return Fetched(path, False, (), _record(path))
    try:
        download(source.url, path, expected, source.size, progress=progress, timeout=timeout)
    except ChecksumError as err:
        if not recorded:
            raise
        raise ChecksumError(
            f"{err}; the remote file changed since its sha256 was recorded in {_record_path(path)}: "
            "delete that record to accept the new file"
        ) from err
    if expected:
        return Fetched(path, True, checked)
    sha = _record(path)
    log.warning("%s: downloaded UNVERIFIED from %s; %s recorded in %s", path, source.url, sha, _record_path(path))
    return Fetched(path, True, (), sha)


def _extract(archive: Path, member: str, out: Path) -> Path:
    """Extract the zip entry whose base name is ``member`` to ``out``, atomically."""
    try:
        with zipfile.ZipFile(archive) as zf:
            hits = [i for i in zf.infolist() if Path(i.filename).name == member and not i.is_dir()]
            if len(hits) != 1:
                raise CorruptFileError(
                    f"{archive}: expected one entry named {member!r}, found {len(hits)} "
                    f"(entries: {[i.filename for i in zf.infolist()][:10]})"
                )

            def copy_out(tmp: Path) -> None:
                with open(tmp, "wb") as dst, zf.open(hits[0]) as src:
                    while block := src.read(1 << 20):
                        dst.write(block)

            atomic_write(out, copy_out)
    except zipfile.BadZipFile as err:
        raise CorruptFileError(f"{archive}: not a readable zip archive ({err})") from err
    return out


def fetch(
    source: Source | str,
    dest: str | Path | None = None,
    *,
    allow_unverified: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
    sources: Mapping[str, Source] = REGISTRY,
) -> Fetched:
    """Download ``source`` (a :class:`Source` or a registry name) into ``dest``, verified.

    ``dest`` defaults to :func:`cache_dir`. A cached file that verifies is
    used without contacting the server; one that does not is deleted and
    fetched again. An archive entry's ``member`` is extracted beside it (and
    its sha256 recorded, so the extracted copy is checked on later calls).

    Raises :class:`ChecksumError` for a mismatch, or for an entry without a
    checksum unless ``allow_unverified``; :class:`DownloadError` naming the
    URL when the server is down, answers an HTTP error or breaks off.
    """
    source = get_source(source, sources) if isinstance(source, str) else source
    dest = _usable_folder(Path(dest) if dest is not None else cache_dir(), dest is None)
    if source.member is None:
        return _fetch_file(source, dest, allow_unverified, progress, timeout)
    out = dest / source.local_name
    rec = recorded_checksum(out)
    if rec and _verify_cached(out, (rec,), None):
        return Fetched(out, False, ("recorded sha256",))
    got = _fetch_file(source, dest, allow_unverified, progress, timeout)
    _extract(got.path, source.member, out)
    return Fetched(out, got.downloaded, got.checked, _record(out))
