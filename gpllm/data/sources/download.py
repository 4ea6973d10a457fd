"""Verified, atomic downloads: a URL becomes a file only once its checksums match.

The bytes are streamed by pooch's :class:`pooch.HTTPDownloader` (requests,
with a rich progress bar) into a hidden temporary file beside the target,
verified, and only then renamed over the target (``os.replace`` is atomic on
one file system). A failed, interrupted or mismatching download leaves
nothing behind, so a half-written file is never mistaken for data.

Checksums are written ``"<algorithm>:<hex digest>"`` (``md5`` or ``sha256``,
pooch's notation); all that are given must match, computed in one pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from gpllm.atomic import atomic_write
from gpllm.errors import ChecksumError, DownloadError, InputError

#: Algorithms a checksum may name, and the length of their hex digest.
ALGORITHMS: Mapping[str, int] = {"md5": 32, "sha256": 64}
_CHUNK = 1 << 20


def parse_checksum(checksum: str, where: str = "checksum") -> tuple[str, str]:
    """``"sha256:ab12..."`` -> ``("sha256", "ab12...")``, or :class:`InputError`."""
    alg, sep, digest = checksum.partition(":")
    alg, digest = alg.strip().lower(), digest.strip().lower()
    if not sep or alg not in ALGORITHMS or len(digest) != ALGORITHMS[alg] or not _is_hex(digest):
        raise InputError(
            f"{where}: {checksum!r} is not '<algorithm>:<hex digest>' with algorithm one of "
            f"{sorted(ALGORITHMS)} and a full-length digest"
        )
    return alg, digest


def _is_hex(s: str) -> bool:
    return all(c in "0123456789abcdef" for c in s)


def file_digests(path: str | Path, algorithms: Iterable[str] = ("sha256",)) -> dict[str, str]:
    """Hex digests of the file at ``path`` for each algorithm, in one read."""
    hashers = {alg: hashlib.new(alg) for alg in algorithms}
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            for h in hashers.values():
                h.update(block)
    return {alg: h.hexdigest() for alg, h in hashers.items()}


def mismatches(path: str | Path, checksums: Iterable[str], size: int | None = None) -> list[str]:
    """What about the file at ``path`` disagrees with ``checksums`` and ``size``; [] if all match.

    Size is compared first: a truncated file is reported without hashing it.
    """
    path = Path(path)
    got_size = path.stat().st_size
    if size is not None and got_size != size:
        return [f"size {got_size:,} bytes, expected {size:,}"]
    expected = dict(parse_checksum(c, str(path)) for c in checksums)
    got = file_digests(path, expected)
    return [f"{alg} {got[alg]}, expected {want}" for alg, want in expected.items() if got[alg] != want]


class RichBar:
    """pooch's custom progress-bar protocol (``total``, ``update``, ``reset``, ``close``) drawn by rich.

    pooch sets ``total`` (the Content-Length) after construction, so the rich
    task is created on the first update. ``close`` is idempotent: it is also
    called after a failed download, which pooch leaves open.
    """

    def __init__(self, label: str) -> None:
        self.total = 0
        self.label = label
        self._progress = None
        self._task = None

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        # stderr: stdout stays clean for the path a command prints
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(self.label, total=self.total or None)

    def update(self, n: int) -> None:
        if self._progress is None:
            self._start()
        self._progress.advance(self._task, n)

    def reset(self) -> None:
        if self._progress is not None:
            self._progress.reset(self._task, total=self.total or None)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def download(
    url: str,
    target: str | Path,
    checksums: Iterable[str] = (),
    size: int | None = None,
    *,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Stream ``url`` to ``target`` atomically; the target appears only if it verifies.

    ``checksums`` (``"alg:hex"``, all must match) and ``size`` (bytes) are
    checked on the temporary file; with neither, the bytes are kept unverified
    (the caller decides whether that is allowed). Raises
    :class:`DownloadError` naming the URL if the server is unreachable,
    answers with an HTTP error or breaks off mid-transfer, and
    :class:`ChecksumError` if what arrived does not match. Either way the
    temporary file is deleted and an existing ``target`` is left untouched.
    """
    import pooch
    import requests

    checksums = tuple(checksums)
    for c in checksums:
        parse_checksum(c, url)
    target = Path(target)

    def fetch_and_verify(tmp: Path) -> None:
        bar = RichBar(target.name) if progress else False
        try:
            pooch.HTTPDownloader(progressbar=bar, timeout=timeout)(url, str(tmp), None)
        except requests.HTTPError as err:
            code = err.response.status_code if err.response is not None else "?"
            raise DownloadError(f"{url}: server answered HTTP {code} ({err})") from err
        except requests.RequestException as err:  # refused, timed out, or fewer bytes than Content-Length
            n = tmp.stat().st_size
            unreachable = n == 0 and isinstance(err, requests.ConnectionError | requests.Timeout)
            what = "cannot reach the server" if unreachable else f"transfer broke off after {n:,} bytes"
            raise DownloadError(f"{url}: {what} ({type(err).__name__}: {err}); nothing was kept") from err
        finally:
            if bar:
                bar.close()
        bad = mismatches(tmp, checksums, size)
        if bad:
            raise ChecksumError(
                f"{url}: downloaded file does not match the registry ({'; '.join(bad)}); "
                f"it was deleted, {target} was not written"
            )

    return atomic_write(target, fetch_and_verify)
