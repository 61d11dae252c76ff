"""Safe archive access (zip, tar, tar.gz) and fetching of source files with sha256.

Every member name of an archive is checked before it is used, whether the
member is extracted or read in place: absolute names, names with a drive, and
names whose resolved path escapes the target folder (``../evil``) are refused,
and so are symbolic links, hard links, devices and FIFOs. A refused member is
an :class:`UnsafeArchiveError` naming the archive and the member.

:func:`fetch` gets a source file either from a local mirror folder (the file of
that name, used in place) or by downloading the official URL into a cache
folder (atomically, so a killed download never looks complete).

Guards (a loader's options ``max_file_mb``, ``max_archive_mb``,
``max_compression_ratio``; :class:`Limits`): only regular files are read (a FIFO
or a device is an :class:`UnreadableFileError`, never opened for a blocking
read), and an image file or member larger than ``max_file_mb`` is one too (the
file is skipped by ``prepare``). An archive whose members add up to more than
``max_archive_mb``, or (once it expands above 10 MB) to more than
``max_compression_ratio`` times the archive's size, is refused before anything
is read or extracted, naming the option.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tlbench.core.atomic import atomic_file
from tlbench.core.hashing import sha256_file

#: Default download cache (override with ``TLBENCH_CACHE`` or ``cache_dir=``).
DEFAULT_CACHE = Path(os.environ.get("TLBENCH_CACHE", Path.home() / ".cache" / "tlbench"))


#: The compression-ratio guard applies once an archive expands above this many bytes.
RATIO_FLOOR = 10_000_000

_MB = 1_000_000


@dataclass(frozen=True)
class Limits:
    """The file-size cap and the zip-bomb guard (dataset options of the same names)."""

    max_file_mb: float = 100
    max_archive_mb: float = 50_000
    max_compression_ratio: float = 100

    def check_file(self, size: int) -> None:
        """Raise :class:`UnreadableFileError` for a file of ``size`` bytes above the cap."""
        if size > self.max_file_mb * _MB:
            raise UnreadableFileError(
                f"file of {size / _MB:.3g} MB is above max_file_mb={self.max_file_mb}"
            )

    def check_archive(self, archive: str | os.PathLike, sizes: Iterable[int]) -> None:
        """Refuse an archive whose members (``sizes``, uncompressed) expand too far."""
        total, packed = sum(sizes), max(os.path.getsize(archive), 1)
        if total > self.max_archive_mb * _MB:
            raise UnsafeArchiveError(
                f"{archive} expands to {total / _MB:.4g} MB, above "
                f"max_archive_mb={self.max_archive_mb}; raise that dataset option if it is genuine"
            )
        if total > RATIO_FLOOR and total / packed > self.max_compression_ratio:
            raise UnsafeArchiveError(
                f"{archive} expands {total / packed:.0f} times its size ({total / _MB:.4g} MB "
                f"from {packed / _MB:.3g} MB), above max_compression_ratio="
                f"{self.max_compression_ratio} (a zip bomb?); raise that dataset option if it "
                "is genuine"
            )


class UnreadableFileError(ValueError):
    """A file ``prepare`` skips before reading it; ``.reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def read_regular(path: str | os.PathLike, limits: Limits) -> bytes:
    """The bytes of ``path`` if it is a regular file (links followed) within the size cap.

    Opened without blocking (a FIFO never waits for a writer), checked with
    ``fstat`` on the open file: anything else is an :class:`UnreadableFileError`.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = (
                "FIFO"
                if stat.S_ISFIFO(mode)
                else "device"
                if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "socket"
                if stat.S_ISSOCK(mode)
                else "not a file"
            )
            raise UnreadableFileError(f"not a regular file ({kind}): only regular files are read")
        limits.check_file(os.fstat(fd).st_size)
        return handle.read()


class UnsafeArchiveError(ValueError):
    """An archive member that would escape the target folder or is a link/device."""


class ChecksumError(ValueError):
    """A source file whose sha256 differs from the configured one."""


def check_member_name(archive: str | os.PathLike, name: str) -> str:
    """Return the normalised relative POSIX name of a member, or raise if unsafe."""
    raw = name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: refusing member {name!r}: absolute path")
    normal = posixpath.normpath(raw)
    if normal == ".." or normal.startswith("../"):
        raise UnsafeArchiveError(f"{archive}: refusing member {name!r}: escapes the target folder")
    return "" if normal == "." else normal


def _check_inside(archive: str | os.PathLike, name: str, dest: Path) -> Path:
    """Resolve ``dest/name`` and make sure it stays inside ``dest`` (symlinked parents too)."""
    root = dest.resolve()
    target = (root / check_member_name(archive, name)).resolve()
    if target != root and root not in target.parents:
        raise UnsafeArchiveError(f"{archive}: refusing member {name!r}: escapes the target folder")
    return target


def _zip_is_link_or_special(info: zipfile.ZipInfo) -> bool:
    """True for a Unix symlink/device/FIFO entry (no file-type bits counts as a file)."""
    kind = stat.S_IFMT(info.external_attr >> 16)
    return kind not in (0, stat.S_IFREG, stat.S_IFDIR)


def _check_tar_member(archive: str | os.PathLike, member: tarfile.TarInfo) -> str:
    name = check_member_name(archive, member.name)
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(
            f"{archive}: refusing member {member.name!r}: link to {member.linkname!r}"
        )
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(
            f"{archive}: refusing member {member.name!r}: device or special file"
        )
    return name


def _check_zip_member(archive: str | os.PathLike, info: zipfile.ZipInfo) -> str:
    name = check_member_name(archive, info.filename)
    if _zip_is_link_or_special(info):
        raise UnsafeArchiveError(
            f"{archive}: refusing member {info.filename!r}: link or special file"
        )
    return name


def archive_kind(path: str | os.PathLike) -> str:
    """Return ``"zip"`` or ``"tar"`` from the file's content, or raise naming the file."""
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise ValueError(f"{path} is neither a zip nor a tar archive")


def safe_extract(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    include: Callable[[str], bool] | None = None,
    limits: Limits | None = None,
) -> Path:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into ``dest`` after checking every member.

    All members are checked first (nothing is written if any is unsafe);
    ``include(name)`` optionally selects which members to write; ``limits`` (default
    :class:`Limits`) refuses a zip bomb before anything is written.
    """
    limits = limits or Limits()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if archive_kind(archive) == "zip":
        with zipfile.ZipFile(archive) as zf:
            infos = [(info, _check_zip_member(archive, info)) for info in zf.infolist()]
            for info, _ in infos:
                _check_inside(archive, info.filename, dest)
            limits.check_archive(archive, (info.file_size for info in zf.infolist()))
            for info, name in infos:
                if not name or (include is not None and not include(name)):
                    continue
                target = dest / name
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
        return dest
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        checked = [(m, _check_tar_member(archive, m)) for m in members]
        for member, _ in checked:
            _check_inside(archive, member.name, dest)
        limits.check_archive(archive, (member.size for member in members))
        for member, name in checked:
            if not name or (include is not None and not include(name)):
                continue
            target = dest / name
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(member)
            if src is None:  # pragma: no cover - regular files always have data
                raise UnsafeArchiveError(f"{archive}: member {member.name!r} has no data")
            with src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    return dest


class ZipReader:
    """Read members of a zip in place; every member name is safety-checked on open.

    ``names`` lists the regular files (normalised names). Use as a context manager
    or call :meth:`close`. ``limits`` (default :class:`Limits`) refuses a zip bomb on
    open and a member above ``max_file_mb`` on read.
    """

    def __init__(self, path: str | os.PathLike, limits: Limits | None = None):
        self.path = Path(path)
        self.limits = limits or Limits()
        self._zip = zipfile.ZipFile(self.path)
        try:
            self.limits.check_archive(self.path, (i.file_size for i in self._zip.infolist()))
        except UnsafeArchiveError:
            self._zip.close()
            raise
        self._infos: dict[str, zipfile.ZipInfo] = {}
        self._dirs: list[str] = []
        for info in self._zip.infolist():
            name = _check_zip_member(self.path.name, info)
            if name and info.is_dir():
                self._dirs.append(name.rstrip("/"))
            elif name:
                self._infos[name] = info

    @property
    def names(self) -> list[str]:
        return list(self._infos)

    @property
    def dirs(self) -> list[str]:
        """The folder entries (normalised names; a zip need not list every folder)."""
        return list(self._dirs)

    def __contains__(self, name: object) -> bool:
        return name in self._infos

    def read(self, name: str) -> bytes:
        """Return the bytes of member ``name``; unknown names list nothing (too many)."""
        try:
            info = self._infos[name]
        except KeyError:
            raise FileNotFoundError(f"{self.path.name} has no member {name!r}") from None
        self.limits.check_file(info.file_size)
        return self._zip.read(info)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> ZipReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_tar_files(path: str | os.PathLike) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, bytes)`` of the regular files of a tar, checking every member."""
    with tarfile.open(path) as tf:
        for member in tf:
            name = _check_tar_member(Path(path).name, member)
            if member.isfile() and name:
                handle = tf.extractfile(member)
                assert handle is not None
                with handle:
                    yield name, handle.read()


def _download(url: str, target: Path) -> None:
    """Download ``url`` to ``target`` atomically."""
    with urllib.request.urlopen(url, timeout=60) as response, atomic_file(target, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)


def fetch(
    url_or_name: str,
    sha256: str | None = None,
    mirror: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Return a local path to a source file, verifying ``sha256`` when given.

    With ``mirror`` (a local folder) the file of the same base name is taken from
    there, in place; a missing file is an error naming the expected path.
    Otherwise ``url_or_name`` (a URL) is downloaded into ``cache_dir`` (default
    :data:`DEFAULT_CACHE`) unless already there. A sha256 mismatch deletes a
    downloaded/cached file (never a mirror's file) and raises
    :class:`ChecksumError` naming the expected and the actual digest.
    """
    name = posixpath.basename(urllib.parse.urlparse(url_or_name).path) or url_or_name
    if mirror is not None:
        mirror = Path(mirror).expanduser()
        if mirror.is_file() and mirror.name == name:  # the file itself was given
            mirror = mirror.parent
        if not mirror.is_dir():
            raise FileNotFoundError(
                f"source folder {mirror} does not exist (expected {name} in it)"
            )
        path = mirror / name
        if not path.is_file():
            raise FileNotFoundError(f"source folder {mirror} has no {name} (expected {path})")
        if sha256 is not None:
            actual = sha256_file(path)
            if actual != sha256.lower():
                raise ChecksumError(f"{path}: sha256 {actual} does not match expected {sha256}")
        return path
    if "://" not in url_or_name:
        raise ValueError(f"{url_or_name!r} is not a URL and no mirror folder was given")
    cache = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
    path = cache / name
    if not path.is_file():
        try:
            _download(url_or_name, path)
        except OSError as exc:
            raise OSError(
                f"could not download {url_or_name}: {exc}; put {name} in a folder and "
                "give it as the dataset's source"
            ) from exc
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256.lower():
            path.unlink()
            raise ChecksumError(
                f"{url_or_name}: sha256 {actual} does not match expected {sha256}; deleted {path}"
            )
    return path
