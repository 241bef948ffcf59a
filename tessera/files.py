"""Writing outputs so that none is ever left half-written under its final name.

A job killed mid-write, or a disk that fills, leaves at most a hidden temporary file beside the
output; the output itself appears (by an atomic rename in the same folder) only once complete.
The data reaches the disk (fsync) before the rename, and the rename itself after it (fsync of
the folder), so that a power cut or a node that dies cannot leave a renamed but empty file.
"""

import contextlib
import errno
import json
import os
import re
from pathlib import Path

# The errors a user fixes on their side (free space, a writable folder), said in one line.
DISK_ERRORS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EFBIG: "file too large",
}


_SHORT_WRITE = re.compile(r"^\d+ requested and \d+ written$")


def temporary(path):
    """A hidden name beside path that keeps its extension (Keras, numpy, Pillow and matplotlib
    choose the format by it). The same for every write of path, so that a killed job's leftover
    is overwritten by the next one, not left to pile up (one job at a time writes an output)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic(path):
    """Yields a temporary path to write the output to; renamed to path if the block ends without
    an error, removed otherwise. An OSError names path, not the temporary file."""
    path = Path(path)
    tmp = temporary(path)
    try:
        made = _missing_folders(path.parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        fsync(tmp)
        os.replace(tmp, path)
        # the rename, and the folders made for it, are entries of their folders
        for folder in [path.parent, *(f.parent for f in made)]:
            fsync(folder)
    except BaseException as e:
        _remove(tmp)
        if named := naming(e, path, tmp):
            raise named from e
        raise


def _missing_folders(folder):
    """The folders of a path that do not exist yet, deepest first."""
    missing = []
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    return missing


def naming(exception, path, *aliases):
    """The disk error behind exception as an OSError that names path (where it named none of its
    own, or a temporary alias of path), or None if it is not a disk error."""
    found = disk_error(exception)
    if found is None or (found[1] and found[1] not in {str(a) for a in aliases}):
        return None
    code = next(k for k, v in DISK_ERRORS.items() if v == found[0])
    return OSError(code, os.strerror(code), str(path))


def _remove(tmp):
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def write_text(path, text):
    with atomic(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, value, **kw):
    write_text(path, json.dumps(value, indent=1, **kw) + "\n")


def write_tsv(table, path):
    """A pandas table as tab-separated text, without its index."""
    with atomic(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def disk_error(exception):
    """(reason, path) if the exception, or one it was raised from, is a disk error such as a full
    disk; otherwise None. Libraries (h5py, Keras) sometimes wrap the OSError in their own."""
    seen = set()
    while exception is not None and id(exception) not in seen:
        seen.add(id(exception))
        if isinstance(exception, OSError) and exception.errno in DISK_ERRORS:
            filename = exception.filename
            return DISK_ERRORS[exception.errno], str(filename) if filename else None
        # numpy's tofile reports a full disk as a short write ("76032 requested and 49024
        # written"), with no errno; h5py and others put the C library's text in their own
        if "No space left on device" in str(exception) or _SHORT_WRITE.search(str(exception)):
            return DISK_ERRORS[errno.ENOSPC], getattr(exception, "filename", None)
        exception = exception.__cause__ or exception.__context__
    return None


def check_writable(folder, key):
    """None if folder can be created and written, else one line naming key and why not. Creates
    nothing: it looks at the deepest part of the path that exists."""
    folder = Path(os.path.abspath(folder))
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        return f"{key}: {folder} cannot be created: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        try:
            # access() tells a read-only file system even to root; say which it is
            reason = "read-only file system" if os.statvfs(existing).f_flag & os.ST_RDONLY else None
        except OSError:
            reason = None
        where = "" if existing == folder else f" in {existing}"
        return f"{key}: {folder} cannot be written{where} ({reason or 'permission denied'})"
    return None


def fsync(path):
    """Flush a file's (or a folder's entries') writes to the disk, so that a rename after it
    survives a power cut or a node that dies, not only a kill. A file system that cannot sync a
    folder says so (EINVAL): its renames are then as durable as it makes them."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP) or not os.path.isdir(path):
            raise
    finally:
        os.close(fd)
