"""Where ``keystile scan`` looks: files, directories and the history of git repositories.

Directories are walked without following symbolic links, skipping version-control internals; in a git work tree
the files are those git lists (tracked, and untracked ones that no ``.gitignore`` or exclude file ignores), unless
asked otherwise. Files that look binary (a NUL byte in their first 8 KiB) or are larger than the size limit are
counted as skipped, not read. History is every line that any commit of any ref added (``git log -p --all``),
reported with the commit.
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


def scan_paths(
    paths: list[Path], tally: Tally, max_bytes: int = DEFAULT_MAX_BYTES, *, gitignore: bool = True
) -> Iterator[Finding]:
    """The keys in the files at and under ``paths``, in path order.

    With ``gitignore``, a directory in a git work tree yields only the files git does not ignore (see
    :func:`unignored_files`); a file named in ``paths`` is read whatever git thinks of it.
    """
    for path in paths:
        if not path.is_dir():
            yield from scan_file(path, tally, max_bytes)
            continue
        listed = unignored_files(path) if gitignore else None
        for file in _walk(path) if listed is None else listed:
            if file.is_symlink() or not file.exists():
                continue  # a link, or a file git tracks that the work tree no longer has
            if file.is_dir():  # a submodule or a repository inside the work tree, which git lists as one entry
                yield from scan_paths([file], tally, max_bytes, gitignore=gitignore)
            else:
                yield from scan_file(file, tally, max_bytes)


def _walk(path: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(files):
            yield Path(root) / name


def _walk_order(name: str) -> tuple[tuple[int, str], ...]:
    """Sorts relative paths as :func:`_walk` meets them: a directory's files, then its subdirectories."""
    *dirs, last = name.rstrip("/").split("/")
    return (*((1, d) for d in dirs), (0, last))


def unignored_files(directory: Path) -> list[Path] | None:
    """The files under ``directory`` that git does not ignore (tracked, or untracked and not excluded by a
    ``.gitignore``, ``.git/info/exclude`` or the user's excludes file), in walk order.

    ``None`` when git should not decide: git is missing, ``directory`` is not in a work tree, or it is itself
    ignored (a directory named on purpose, such as ``.venv``, is scanned whole).
    """
    try:
        ignored = _git(directory, "check-ignore", "-q", ".")
        listing = _git(directory, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    except GitUnavailable:
        return None
    # check-ignore: 0 ignored, 1 not ignored, 128 not in a work tree (or another failure).
    if subprocess.run(ignored, capture_output=True, check=False).returncode != 1:  # noqa: S603 (git, our arguments)
        return None
    done = subprocess.run(listing, capture_output=True, check=False)  # noqa: S603 (git, our own arguments)
    if done.returncode != 0:
        return None
    names = sorted((os.fsdecode(raw) for raw in done.stdout.split(b"\0") if raw), key=_walk_order)
    return [directory / name for name in dict.fromkeys(names)]


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
