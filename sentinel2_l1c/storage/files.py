"""Local files written so that nothing half-written is ever taken as done.

Every output goes to a temporary name beside its target (hidden: it starts with ``.``) and is
renamed when complete; a killed run leaves the previous file or a temporary one that the next
run removes.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath


def temp_sibling(target: Path) -> Path:
    """A unique temporary name beside ``target``; never matches the patterns of finished outputs."""
    return target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:12]}")


@contextlib.contextmanager
def atomic_output(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it to ``target`` only on success.

    Works for a file or a folder written at the yielded path. On error the temporary output
    is removed and ``target`` is left as it was, so nothing half-written is taken as done.
    Temporary outputs of ``target`` that a killed run left are removed first.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{glob.escape(target.name)}.tmp-*"):
        remove_tree(stale)
    temp = temp_sibling(target)
    try:
        yield temp
        if temp.is_file():
            fsync_file(temp)
        os.replace(temp, target)
    except BaseException:
        remove_tree(temp)
        raise


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (temp file, fsync, rename)."""
    with atomic_output(target) as temp:
        temp.write_bytes(data)


def atomic_write_text(target: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``target`` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


def remove_tree(path: Path) -> None:
    """Remove a file or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def tree_size(path: Path) -> tuple[int, int]:
    """Number of files and bytes of a folder (or of one file)."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return len(files), sum(p.stat().st_size for p in files)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def is_safe_relative(name: str) -> bool:
    """True if the relative path ``name`` (``/``-separated) stays inside the folder it is
    joined to and can be a file name there: not empty, not absolute, no ``..`` parts, no NUL."""
    parts = PurePosixPath(name).parts
    return bool(parts) and not name.startswith("/") and ".." not in parts and "\0" not in name


def hidden(relative: PurePosixPath | Path) -> bool:
    """True for paths with a part starting with ``.``: this tool's temporary outputs."""
    return any(part.startswith(".") for part in relative.parts)


def copy_file(source: Path, target: Path) -> None:
    """Copy contents and modification time under a temporary name, then rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_sibling(target)
    try:
        shutil.copy2(source, temp)
        os.replace(temp, target)
    except BaseException:
        remove_tree(temp)
        raise
