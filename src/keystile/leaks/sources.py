"""Where ``keystile scan`` looks: files, directories and the history of git repositories.

Directories are walked without following symbolic links, skipping version-control internals; files that look
binary (a NUL byte in their first 8 KiB) or are larger than the size limit are counted as skipped, not read.
History is every line that any commit of any ref added (``git log -p --all``), reported with the commit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from keystile.core.scan import Match, find_in_line, find_keys

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn"})
_SNIFF = 8192
_COMMIT_MARK = b"\x00commit "  # the --format of each commit: a NUL cannot start a line of a diff


class GitUnavailable(Exception):
    """git is not installed, or the path is not in a git repository."""


@dataclass(frozen=True, slots=True)
class Finding:
    """A key found at ``path`` (as given, or relative to the repository for history), line and column; with
    ``commit`` when it was found in history. Holds the key's ``start`` and digest, never the key."""

    path: str
    line: int
    column: int
    start: str
    digest: str
    length: int
    commit: str | None = None

    @classmethod
    def at(cls, path: str, match: Match, commit: str | None = None) -> Finding:
        return cls(path, match.line, match.column, match.start, match.digest, match.length, commit)


@dataclass(slots=True)
class Tally:
    """What a scan went through; ``progress`` is called after each file and commit (for a progress display)."""

    files: int = 0
    skipped: int = 0
    commits: int = 0
    progress: Callable[[Tally], None] | None = None

    def add(self, files: int = 0, skipped: int = 0, commits: int = 0) -> None:
        self.files += files
        self.skipped += skipped
        self.commits += commits
        if self.progress is not None:
            self.progress(self)


def scan_paths(paths: list[Path], tally: Tally, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Finding]:
    """The keys in the files at and under ``paths``, in path order."""
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
                for name in sorted(files):
                    file = Path(root) / name
                    if not file.is_symlink():
                        yield from scan_file(file, tally, max_bytes)
        else:
            yield from scan_file(path, tally, max_bytes)


def scan_file(path: Path, tally: Tally, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Finding]:
    """The keys in one file (none when it is binary, too large or unreadable: those are counted as skipped)."""
    try:
        if not path.is_file() or path.stat().st_size > max_bytes:
            tally.add(skipped=1)
            return
        data = path.read_bytes()
    except OSError:
        tally.add(skipped=1)
        return
    if b"\x00" in data[:_SNIFF]:
        tally.add(skipped=1)
        return
    tally.add(files=1)
    shown = str(path)
    for match in find_keys(data.decode("utf-8", errors="replace")):
        yield Finding.at(shown, match)


def _git(path: Path, *args: str) -> list[str]:
    git = shutil.which("git")
    if git is None:
        raise GitUnavailable("git is not installed")
    where = path if path.is_dir() else path.parent
    return [git, "-C", str(where), "-c", "core.quotepath=off", *args]


def repository_of(path: Path) -> Path | None:
    """The top of the git work tree that ``path`` is in, or ``None`` (not in one, or no git)."""
    try:
        command = _git(path, "rev-parse", "--show-toplevel")
    except GitUnavailable:
        return None
    done = subprocess.run(command, capture_output=True, check=False)  # noqa: S603 (git, our own arguments)
    if done.returncode != 0:
        return None
    return Path(done.stdout.decode("utf-8", errors="replace").strip())


def scan_history(path: Path, tally: Tally) -> Iterator[Finding]:
    """The keys in every line that a commit of any ref added to ``path`` (a repository or a part of one).

    Raises :class:`GitUnavailable` when git is missing or ``path`` is not in a repository.
    """
    if repository_of(path) is None:
        raise GitUnavailable(f"{path} is not in a git repository")
    target = "." if path.is_dir() else path.name
    command = _git(
        path,
        "log",
        "-p",
        "--all",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--unified=0",
        "--format=%x00commit %H",
        "--",
        target,
    )
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as git:  # noqa: S603
        assert git.stdout is not None
        yield from _added_lines(git.stdout, tally)
        git.stdout.close()


class _Diff:
    """The state of reading one ``git log -p --unified=0`` stream."""

    def __init__(self) -> None:
        self.commit: str | None = None
        self.path: str | None = None
        self.line = 0
        self.left = 0  # added lines still to come in the current hunk


def _added_lines(stream: Iterator[bytes], tally: Tally) -> Iterator[Finding]:
    diff = _Diff()
    for raw in stream:
        text = raw.decode("utf-8", errors="replace").rstrip("\n")
        if diff.left > 0 and text.startswith("+"):
            if diff.path is not None and diff.commit is not None:
                for match in find_in_line(text[1:], diff.line):
                    yield Finding.at(diff.path, match, diff.commit)
            diff.line += 1
            diff.left -= 1
        elif raw.startswith(_COMMIT_MARK):
            diff.commit, diff.path, diff.left = text[len(_COMMIT_MARK) :].strip(), None, 0
            tally.add(commits=1)
        elif text.startswith("@@ "):
            diff.line, diff.left = _hunk(text)
        elif diff.left == 0 and text.startswith("+++ "):
            diff.path = _diff_path(text[4:])


def _hunk(header: str) -> tuple[int, int]:
    """The first line and the number of lines on the new side of ``@@ -a,b +c,d @@``."""
    new = header.split(" ")[2].removeprefix("+")
    first, _, count = new.partition(",")
    return int(first), int(count) if count else 1


def _diff_path(name: str) -> str | None:
    """``b/dir/file`` of a ``+++`` line as ``dir/file`` (``None`` for ``/dev/null``: a deletion)."""
    name = name.rstrip("\t")
    if name.startswith('"') and name.endswith('"'):
        # git quotes names with control characters or quotes, escaped as in C.
        name = name[1:-1].encode("latin-1", errors="replace").decode("unicode_escape", errors="replace")
        name = name.encode("latin-1", errors="replace").decode("utf-8", errors="replace")
    if name == "/dev/null":
        return None
    return name.removeprefix("b/")
