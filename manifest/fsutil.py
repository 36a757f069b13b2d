"""Atomic writes: a temporary file beside the target, fsync, rename, fsync the directory.
An interrupted write leaves the old file (or none), never a partial one."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path


class NotRegularFile(OSError):
    """The path is a FIFO, socket, device or directory: it was not read."""


def read_regular(path: str | os.PathLike[str], cap: int) -> bytes:
    """Read at most ``cap + 1`` bytes of a regular file (the caller compares the length
    with ``cap``). A FIFO, socket or device is refused before it is opened, and the open
    never blocks (O_NONBLOCK), so a path swapped for a FIFO cannot hang the reader."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(errno.EINVAL, "not a regular file", str(path))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file", str(path))
        chunks: list[bytes] = []
        left = cap + 1
        while left > 0:
            b = os.read(fd, min(left, 1 << 20))
            if not b:
                break
            chunks.append(b)
            left -= len(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_input(path: str | os.PathLike[str], cap: int, what: str, code: str, missing_hint: str = "") -> bytes:
    """Read a small input file the user named (a manifest, an OMS bundle, a key) with
    :func:`read_regular`, turning every failure into a one-line :class:`InputError`:
    ``code`` for a missing, non-regular or oversized file, ``unreadable`` for I/O errors."""
    from .errors import InputError

    try:
        data = read_regular(path, cap)
    except FileNotFoundError:
        raise InputError(f"{what} {path} not found{missing_hint}", code=code) from None
    except NotRegularFile:
        raise InputError(f"{what} {path} is not a regular file (a directory, FIFO, socket or device); it was not read", code=code) from None
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror}", code="unreadable") from None
    if len(data) > cap:
        raise InputError(f"{what} {path} is over the {cap}-byte cap", code=code)
    return data


class RefusedTarget(OSError):
    """The output path exists and is not a regular file (a FIFO, socket, device,
    directory or symlink): a writer never replaces what is not its own."""


def file_kind(mode: int) -> str:
    """What a non-regular entry is, for messages (``st_mode`` from ``lstat``)."""
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device node"
    return "special file"


def check_target(path: str | os.PathLike[str]) -> None:
    """Raise :class:`RefusedTarget` unless ``path`` is absent or a regular file (seen with
    ``lstat``: a symlink is refused whatever it points to, and is never followed)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        return  # a parent is not a directory: the write itself fails with a clear error
    if not stat.S_ISREG(st.st_mode):
        raise RefusedTarget(errno.EEXIST, f"exists and is a {file_kind(st.st_mode)}; it is never replaced", str(path))


def refused_message(e: RefusedTarget) -> str:
    """The one-line text for a refused output path."""
    return f"{e.filename}: {e.strerror}; nothing was written"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _write_unnamed(target: Path, directory: Path, data: bytes, mode: int) -> bool:
    """Linux: write into an unnamed O_TMPFILE inode, give it a name only once it is
    complete and synced, then rename it over the target. A process killed at any point
    before the link leaves nothing behind (not even a temporary file). Returns False
    where O_TMPFILE or /proc is unavailable."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):
        return False
    try:
        fd = os.open(directory, flag | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError:
        return False  # file system without O_TMPFILE support
    tmp: str | None = None
    try:
        _write_all(fd, data)
        os.fchmod(fd, mode)
        os.fsync(fd)
        name = f".{target.name}.{os.urandom(6).hex()}.tmp"
        dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            # A dir_fd makes CPython call linkat(..., AT_SYMLINK_FOLLOW): it links the
            # inode behind /proc/self/fd/N rather than the magic link itself.
            os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dfd, follow_symlinks=True)
        except OSError:
            return False
        finally:
            os.close(dfd)
        tmp = str(directory / name)
        check_target(target)  # again right before the rename: the path may have been swapped meanwhile
        os.replace(tmp, target)
        tmp = None
        return True
    finally:
        os.close(fd)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically. Only an absent path or a regular file is
    replaced: anything else (FIFO, socket, device node, directory, symlink) raises
    :class:`RefusedTarget` and nothing is written. The check is made with ``lstat``
    before writing and again right before the rename."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    check_target(target)
    if _write_unnamed(target, directory, data, mode):
        _fsync_dir(directory)
        return
    import tempfile  # only on the fallback path (no O_TMPFILE)

    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        check_target(target)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
