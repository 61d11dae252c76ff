"""Safe extraction (zip, tar) and fetching with sha256."""

from __future__ import annotations

import hashlib
import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from tlbench.core import hashing
from tlbench.datasets import archives
from tlbench.datasets.archives import UnsafeArchiveError


def _zip(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def _tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for member in members:
            if isinstance(member, tuple):
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tf.addfile(info, io.BytesIO(member[1]))
            else:
                tf.addfile(member)
    return path


def _link(name: str, kind: bytes, target: str = "/etc/passwd") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def test_safe_zip_and_tar_extract(tmp_path):
    members = {"data/a.txt": b"a", "data/sub/b.txt": b"b"}
    out = archives.safe_extract(_zip(tmp_path / "ok.zip", members), tmp_path / "z")
    assert (out / "data/sub/b.txt").read_bytes() == b"b"
    tar = _tar(tmp_path / "ok.tar.gz", list(members.items()))
    out = archives.safe_extract(tar, tmp_path / "t", include=lambda n: n.endswith("a.txt"))
    assert (out / "data/a.txt").read_bytes() == b"a"
    assert not (out / "data/sub/b.txt").exists()


@pytest.mark.parametrize("bad", ["../evil.txt", "a/../../evil.txt", "/abs/evil.txt"])
def test_zip_path_escape_refused(tmp_path, bad):
    path = _zip(tmp_path / "bad.zip", {"ok.txt": b"x", bad: b"evil"})
    with pytest.raises(UnsafeArchiveError, match="evil.txt"):
        archives.safe_extract(path, tmp_path / "out")
    assert not (tmp_path / "out" / "ok.txt").exists()  # nothing written
    assert not (tmp_path / "evil.txt").exists()
    with pytest.raises(UnsafeArchiveError, match="evil.txt"):
        archives.ZipReader(path)


@pytest.mark.parametrize("bad", ["../evil.txt", "/abs/evil.txt"])
def test_tar_path_escape_refused(tmp_path, bad):
    path = _tar(tmp_path / "bad.tar.gz", [("ok.txt", b"x"), (bad, b"evil")])
    with pytest.raises(UnsafeArchiveError, match="evil.txt"):
        archives.safe_extract(path, tmp_path / "out")
    assert not (tmp_path / "out" / "ok.txt").exists()
    with pytest.raises(UnsafeArchiveError, match="evil.txt"):
        list(archives.iter_tar_files(path))


def test_zip_symlink_refused(tmp_path):
    path = _zip(tmp_path / "link.zip", {"ok.txt": b"x"}, symlink="data/passwd")
    with pytest.raises(UnsafeArchiveError, match="data/passwd.*link"):
        archives.safe_extract(path, tmp_path / "out")
    with pytest.raises(UnsafeArchiveError, match="data/passwd"):
        archives.ZipReader(path)


@pytest.mark.parametrize(
    "member, message",
    [
        (_link("data/sym", tarfile.SYMTYPE), "data/sym.*link"),
        (_link("data/hard", tarfile.LNKTYPE, "ok.txt"), "data/hard.*link"),
        (_link("data/dev", tarfile.CHRTYPE, ""), "data/dev.*device"),
        (_link("data/fifo", tarfile.FIFOTYPE, ""), "data/fifo.*device"),
    ],
)
def test_tar_links_and_devices_refused(tmp_path, member, message):
    path = _tar(tmp_path / "bad.tar", [("ok.txt", b"x"), member])
    with pytest.raises(UnsafeArchiveError, match=message):
        archives.safe_extract(path, tmp_path / "out")


def test_archive_kind_rejects_other_files(tmp_path):
    other = tmp_path / "plain.txt"
    other.write_text("hello")
    with pytest.raises(ValueError, match="neither a zip nor a tar"):
        archives.archive_kind(other)


def test_fetch_from_mirror(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.zip").write_bytes(b"payload")
    url = "https://example.org/files/data.zip"
    assert archives.fetch(url, mirror=mirror) == mirror / "data.zip"
    assert archives.fetch(url, mirror=mirror / "data.zip") == mirror / "data.zip"
    good = hashlib.sha256(b"payload").hexdigest()
    assert archives.fetch(url, sha256=good, mirror=mirror) == mirror / "data.zip"
    with pytest.raises(archives.ChecksumError, match="0{64}"):
        archives.fetch(url, sha256="0" * 64, mirror=mirror)
    assert (mirror / "data.zip").exists()  # a mirror's file is never deleted
    with pytest.raises(FileNotFoundError, match="other.zip"):
        archives.fetch("https://example.org/other.zip", mirror=mirror)


def test_fetch_downloads_and_deletes_on_sha256_mismatch(tmp_path):
    remote = tmp_path / "remote" / "data.bin"
    remote.parent.mkdir()
    remote.write_bytes(b"remote bytes")
    cache = tmp_path / "cache"
    actual = hashlib.sha256(b"remote bytes").hexdigest()
    wrong = "f" * 64
    with pytest.raises(archives.ChecksumError) as info:
        archives.fetch(remote.as_uri(), sha256=wrong, cache_dir=cache)
    assert wrong in str(info.value) and actual in str(info.value)
    assert not (cache / "data.bin").exists()
    assert list(cache.iterdir()) == []  # no partial download left either
    path = archives.fetch(remote.as_uri(), sha256=actual, cache_dir=cache)
    assert path == cache / "data.bin" and path.read_bytes() == b"remote bytes"
    assert hashing.sha256_file(path) == actual


def test_fetch_download_failure_names_url(tmp_path):
    missing = (tmp_path / "nowhere" / "gone.zip").as_uri()
    with pytest.raises(OSError, match="gone.zip"):
        archives.fetch(missing, cache_dir=tmp_path / "cache")
