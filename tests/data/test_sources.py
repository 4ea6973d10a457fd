"""Registry and verified fetching, against a real HTTP server on the loopback interface."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gpllm.data.sources import registry as sources
from gpllm.data.sources.download import file_digests, mismatches, parse_checksum
from gpllm.data.sources.registry import REGISTRY, Source, fetch, load_sources, recorded_checksum, registry
from gpllm.errors import ChecksumError, CorruptFileError, DataError, DownloadError, InputError
from tests.data.loopback import Loopback

PAYLOAD = np.random.default_rng(0).bytes(300_000)  # several chunks of pooch's 1 KiB stream


def sums(data: bytes) -> tuple[str, str]:
    return f"md5:{hashlib.md5(data).hexdigest()}", f"sha256:{hashlib.sha256(data).hexdigest()}"


@pytest.fixture
def server():
    with Loopback() as srv:
        yield srv


def entry(server: Loopback, name: str = "blob.bin", data: bytes = PAYLOAD, **kw) -> Source:
    server.files.setdefault(name, data)
    kw.setdefault("checksums", sums(data))
    return Source(f"test-{name}", server.url(name), name, "test file", **kw)


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir() if p.name.endswith((".part", ".tmp")))


# -------------------------------------------------------------- good downloads
def test_good_hash_downloads_verifies_and_caches(server, tmp_path):
    src = entry(server, size=len(PAYLOAD))
    got = fetch(src, tmp_path, progress=False)
    assert got.path == tmp_path / "blob.bin" and got.path.read_bytes() == PAYLOAD
    assert got.downloaded and got.checked == ("md5", "sha256")
    again = fetch(src, tmp_path, progress=False)
    assert again.path == got.path and not again.downloaded
    assert server.hits["blob.bin"] == 1  # the cache hit never reached the server
    assert leftovers(tmp_path) == []


def test_progress_bar_runs(server, tmp_path, capsys):
    fetch(entry(server), tmp_path, progress=True)
    assert (tmp_path / "blob.bin").read_bytes() == PAYLOAD
    assert "blob.bin" in capsys.readouterr().err  # rich draws on stderr


def test_cache_dir_from_env(server, tmp_path, monkeypatch):
    monkeypatch.setenv("GPLLM_DATA", str(tmp_path / "cache"))
    assert sources.cache_dir() == tmp_path / "cache"
    got = fetch(entry(server), progress=False)
    assert got.path == tmp_path / "cache" / "blob.bin"
    assert sources.is_cached(entry(server))


def test_cache_dir_default_is_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("GPLLM_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sources.cache_dir() == tmp_path / "xdg" / "gpllm"


def test_a_cache_that_cannot_hold_files_is_one_error_naming_it_and_the_setting(server, tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    monkeypatch.setenv("GPLLM_DATA", str(tmp_path / "a_file"))
    with pytest.raises(
        InputError, match=rf"{tmp_path / 'a_file'} \(the data cache: \$GPLLM_DATA.*is a file, not a folder"
    ):
        fetch(entry(server), progress=False)
    monkeypatch.delenv("GPLLM_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a_file" / "xdg"))  # as an unwritable HOME would
    with pytest.raises(
        InputError, match=r"cannot make the folder .*a_file/xdg/gpllm \(the data cache.*: Not a directory"
    ):
        fetch(entry(server), progress=False)
    assert server.hits.get("blob.bin", 0) == 0


def test_downloads_follow_the_umask_like_every_other_output(server, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        got = fetch(entry(server), tmp_path, progress=False)
    finally:
        os.umask(old)
    assert got.path.stat().st_mode & 0o777 == 0o644


# ------------------------------------------------------------- bad downloads
def test_bad_hash_is_refused_and_nothing_kept(server, tmp_path):
    wrong = ("sha256:" + "0" * 64,)
    with pytest.raises(ChecksumError, match=r"blob\.bin.*sha256") as err:
        fetch(entry(server, checksums=wrong), tmp_path, progress=False)
    assert server.url("blob.bin") in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_one_of_two_checksums_wrong_is_refused(server, tmp_path):
    md5, _ = sums(PAYLOAD)
    with pytest.raises(ChecksumError, match="sha256"):
        fetch(entry(server, checksums=(md5, "sha256:" + "f" * 64)), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_truncated_transfer_is_a_download_error(server, tmp_path):
    server.truncate.add("blob.bin")
    with pytest.raises(DownloadError, match="broke off") as err:
        fetch(entry(server), tmp_path, progress=False)
    assert server.url("blob.bin") in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_file_changed_on_server_is_refused(server, tmp_path):
    src = entry(server)
    server.files["blob.bin"] = PAYLOAD[::-1]  # same length, other bytes
    with pytest.raises(ChecksumError, match="md5"):
        fetch(src, tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_is_refused_before_hashing(server, tmp_path):
    with pytest.raises(ChecksumError, match=f"size {len(PAYLOAD):,} bytes, expected {len(PAYLOAD) + 1:,}"):
        fetch(entry(server, size=len(PAYLOAD) + 1), tmp_path, progress=False)


def test_http_error_names_url_and_status(server, tmp_path):
    src = Source("missing", server.url("nope.bin"), "nope.bin", "", checksums=sums(b"x"))
    with pytest.raises(DownloadError, match="HTTP 404") as err:
        fetch(src, tmp_path, progress=False)
    assert server.url("nope.bin") in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_server_down_is_a_download_error(tmp_path):
    dead = Loopback()  # bound, then closed without ever serving: the port refuses
    url = dead.url("blob.bin")
    dead.server.server_close()
    src = Source("dead", url, "blob.bin", "", checksums=sums(PAYLOAD))
    with pytest.raises(DownloadError, match="cannot reach the server") as err:
        fetch(src, tmp_path, progress=False, timeout=5)
    assert url in str(err.value)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- corrupt cache
def test_corrupt_cached_file_is_fetched_again(server, tmp_path):
    src = entry(server)
    fetch(src, tmp_path, progress=False)
    (tmp_path / "blob.bin").write_bytes(PAYLOAD[:1000])  # a partial file left in the cache
    got = fetch(src, tmp_path, progress=False)
    assert got.downloaded and got.path.read_bytes() == PAYLOAD
    assert server.hits["blob.bin"] == 2


def test_corrupt_cached_file_is_refused_when_server_is_bad_too(server, tmp_path):
    src = entry(server)
    (tmp_path / "blob.bin").write_bytes(b"garbage")
    server.files["blob.bin"] = b"also garbage"
    with pytest.raises(ChecksumError):
        fetch(src, tmp_path, progress=False)
    # Not kept for later use, and not deleted either (it may be a user's own file): moved aside.
    assert [p.name for p in tmp_path.iterdir()] == ["blob.bin.mismatch"]
    assert (tmp_path / "blob.bin.mismatch").read_bytes() == b"garbage"


def test_failed_update_keeps_no_partial_file(server, tmp_path):
    src = entry(server)
    (tmp_path / "blob.bin").write_bytes(b"stale")
    server.truncate.add("blob.bin")
    with pytest.raises(DownloadError):
        fetch(src, tmp_path, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["blob.bin.mismatch"]  # the stale file aside, no partial one


# ----------------------------------------------------------- unknown checksums
def test_unverified_entry_needs_opt_in(server, tmp_path):
    src = entry(server, checksums=())
    with pytest.raises(ChecksumError, match="allow_unverified"):
        fetch(src, tmp_path, progress=False)
    assert server.hits["blob.bin"] == 0 and list(tmp_path.iterdir()) == []


def test_unverified_entry_records_sha256_and_checks_it_later(server, tmp_path):
    src = entry(server, checksums=())
    got = fetch(src, tmp_path, allow_unverified=True, progress=False)
    sha = "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()
    assert got.downloaded and got.checked == () and got.sha256 == sha
    assert recorded_checksum(got.path) == sha
    assert (tmp_path / "blob.bin.sha256").read_text() == f"{sha[7:]}  blob.bin\n"  # sha256sum -c format
    # later calls need no opt-in: the recorded hash verifies the cache
    again = fetch(src, tmp_path, progress=False)
    assert not again.downloaded and again.checked == ("recorded sha256",) and server.hits["blob.bin"] == 1
    # a corrupted cache copy is re-fetched and must match the recorded hash
    got.path.write_bytes(b"x" * len(PAYLOAD))
    assert fetch(src, tmp_path, progress=False).path.read_bytes() == PAYLOAD
    # the remote file changed since it was recorded: refused, not silently replaced
    got.path.write_bytes(b"x")
    server.files["blob.bin"] = b"a new release"
    with pytest.raises(ChecksumError):
        fetch(src, tmp_path, progress=False)
    assert not got.path.exists()


def test_malformed_record_is_reported(server, tmp_path):
    src = entry(server, checksums=())
    (tmp_path / "blob.bin.sha256").write_text("not-a-digest  blob.bin\n")
    with pytest.raises(CorruptFileError, match=r"blob\.bin\.sha256"):
        fetch(src, tmp_path, progress=False)


# -------------------------------------------------------------- zip members
def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_archive_member_is_extracted_and_cached(server, tmp_path):
    archive = _zip({"GenePT_v2/other.json": b"{}", "GenePT_v2/emb.pickle": PAYLOAD})
    src = entry(server, "bundle.zip", archive, member="emb.pickle")
    got = fetch(src, tmp_path, progress=False)
    assert got.path == tmp_path / "emb.pickle" and got.path.read_bytes() == PAYLOAD
    assert got.checked == ("md5", "sha256") and got.sha256 == "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()
    (tmp_path / "bundle.zip").unlink()  # the extracted, recorded member suffices
    assert not fetch(src, tmp_path, progress=False).downloaded
    got.path.write_bytes(b"corrupt")  # re-extracted from a fresh, verified archive
    assert fetch(src, tmp_path, progress=False).path.read_bytes() == PAYLOAD
    assert server.hits["bundle.zip"] == 2 and leftovers(tmp_path) == []


def test_archive_without_member_is_corrupt(server, tmp_path):
    src = entry(server, "bundle.zip", _zip({"a.txt": b"a"}), member="emb.pickle")
    with pytest.raises(CorruptFileError, match="emb.pickle"):
        fetch(src, tmp_path, progress=False)


def test_archive_that_is_not_a_zip_is_corrupt(server, tmp_path):
    src = entry(server, "bundle.zip", b"not a zip", member="emb.pickle")
    with pytest.raises(CorruptFileError, match="not a readable zip"):
        fetch(src, tmp_path, progress=False)


# ------------------------------------------------------------------- registry
def test_builtin_registry_is_complete_and_honest():
    assert {
        "replogle-k562-bulk",
        "replogle-rpe1-bulk",
        "replogle-k562-gwps-bulk",
        "replogle-k562-cells",
        "replogle-rpe1-cells",
        "genept-ada",
        "uniprot-human-prott5",
        "uniprot-human-idmapping",
    } <= set(REGISTRY)
    for s in REGISTRY.values():
        assert s.url.startswith("https://") and s.description
        if not s.verified:
            assert "unknown" in s.notes and "--allow-unverified" in s.notes
    k562 = REGISTRY["replogle-k562-bulk"]
    assert k562.size == 79_766_954 and "md5:8321d5d3ffc99db2a5c71edca4189735" in k562.checksums
    gwps = REGISTRY["replogle-k562-gwps-bulk"]
    assert gwps.url.endswith("/35774443") and gwps.filename == "K562_gwps_raw_bulk_01.h5ad"
    assert gwps.size == 374_587_922 and "md5:4570b53c9d62ff6df281e622f0350060" in gwps.checksums


def test_unknown_name_lists_known_ones(tmp_path):
    with pytest.raises(InputError, match="replogle-k562-bulk"):
        fetch("no-such-file", tmp_path)


def test_sources_file_adds_and_overrides_entries(tmp_path):
    md5, sha = sums(PAYLOAD)
    path = tmp_path / "sources.json"
    path.write_text(
        json.dumps(
            [
                {"name": "replogle-k562-bulk", "url": "http://127.0.0.1:1/k.h5ad", "filename": "k.h5ad"},
                {
                    "name": "mine",
                    "url": "http://127.0.0.1:1/m.bin",
                    "filename": "m.bin",
                    "checksums": [md5, sha],
                    "size": len(PAYLOAD),
                    "description": "my file",
                },
            ]
        )
    )
    reg = registry(path)
    assert reg["replogle-k562-bulk"].url == "http://127.0.0.1:1/k.h5ad"
    assert reg["mine"].checksums == (md5, sha) and reg["genept-ada"] == REGISTRY["genept-ada"]
    assert registry() is REGISTRY


@pytest.mark.parametrize(
    "content, error, match",
    [
        ("{not json", CorruptFileError, "not valid JSON"),
        ('{"name": "x"}', DataError, "JSON list"),
        ('[{"name": "x", "url": "u"}]', DataError, "needs name, url, filename"),
        ('[{"name": "x", "url": "u", "filename": "f", "sha": "1"}]', DataError, "unknown keys"),
        ('[{"name": "x", "url": "u", "filename": "f", "checksums": ["crc:12"]}]', InputError, "algorithm"),
        ('[{"name": "x", "url": "u", "filename": "a/b"}]', InputError, "plain filename"),
        ('[{"name": "x", "url": "u", "filename": ".."}]', InputError, "plain filename"),
    ],
)
def test_bad_sources_file(tmp_path, content, error, match):
    path = tmp_path / "sources.json"
    path.write_text(content)
    with pytest.raises(error, match=match):
        load_sources(path)


def test_checksum_helpers(tmp_path):
    assert parse_checksum("MD5:" + "A" * 32) == ("md5", "a" * 32)
    for bad in ("abc", "sha256:" + "0" * 63, "sha1:" + "0" * 40, "md5:" + "g" * 32):
        with pytest.raises(InputError):
            parse_checksum(bad)
    f = tmp_path / "f"
    f.write_bytes(PAYLOAD)
    md5, sha = sums(PAYLOAD)
    assert file_digests(f, ("md5", "sha256")) == {"md5": md5[4:], "sha256": sha[7:]}
    assert mismatches(f, (md5, sha), len(PAYLOAD)) == []
    assert mismatches(f, ("md5:" + "0" * 32,)) == [f"md5 {md5[4:]}, expected {'0' * 32}"]


def test_unverified_file_placed_by_hand_is_recorded_not_downloaded(server, tmp_path):
    (tmp_path / "blob.bin").write_bytes(PAYLOAD)
    src = entry(server, checksums=())
    with pytest.raises(ChecksumError, match="allow_unverified"):
        fetch(src, tmp_path, progress=False)
    got = fetch(src, tmp_path, allow_unverified=True, progress=False)
    assert not got.downloaded and got.sha256 == recorded_checksum(got.path) and server.hits["blob.bin"] == 0
    (tmp_path / "other.bin").write_bytes(b"12")  # a known size still catches a wrong file
    with pytest.raises(ChecksumError, match="registry says 1"):
        fetch(entry(server, "other.bin", checksums=(), size=1), tmp_path, allow_unverified=True, progress=False)
