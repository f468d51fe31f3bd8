"""The index folder: which version is current, which folders are the index's own, and one build at a time.

    NAME/CURRENT        {"version": "v-..."}: the version readers open; written atomically (the swap)
    NAME/MANIFEST.json  {"versions": {"v-...": {"collection", "qdrant_url"}}}: every version folder (and Qdrant
                        collection) the index created, recorded before it is created; only these are ever deleted
    NAME/.lock          an OS lock held by the one build that writes the folder (released if that process dies)
    NAME/v-.../         one version; complete once its meta.json exists

A folder that holds anything else is not an index and is never written to: `--index-dir` pointing at a notes folder
is refused instead of emptied. An index built before the manifest existed is adopted: its version folders are those
whose meta.json names them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from onecard.core.errors import OnecardError
from onecard.core.extras import require
from onecard.core.records import write_json_atomic
from onecard.rag.vectors import drop_collection

__all__ = ["CURRENT", "MANIFEST", "LOCK", "building", "current_version", "versions", "add_version",
           "remove_versions", "set_current", "check_name", "check_outside"]

CURRENT = "CURRENT"
MANIFEST = "MANIFEST.json"
LOCK = ".lock"
_OWN_FILES = {CURRENT, MANIFEST, LOCK}
_TEMP_PREFIXES = (f".{CURRENT}.", f".{MANIFEST}.")  # write_json_atomic's temporary files, left by a kill


def check_name(name: str) -> str:
    """`name` when it is one plain folder name: never a path that leaves the data directory's rag folder."""
    if name in ("", ".", "..") or any(c in name for c in "/\\:\0") or Path(name).is_absolute():
        raise OnecardError(f"index name {name!r} is not a plain name",
                           "use letters, digits, '-', '_' or '.', e.g. --name notes; to put the index in a folder "
                           "of your choice, pass --index-dir DIR")
    return name


def check_outside(root: Path, roots: list[Path]) -> None:
    """Refuse an index folder that lies inside (or is) a folder it indexes: it belongs beside the user's files."""
    here = root.expanduser().resolve()
    for r in roots:
        r = r.expanduser().resolve()
        if r.is_dir() and (here == r or r in here.parents):
            raise OnecardError(f"the index folder {here} lies inside the indexed folder {r}",
                               "pass an --index-dir outside the folders you index, or leave --index-dir out "
                               "(the index then lives in onecard's data directory)")


@contextlib.contextmanager
def building(root: Path) -> Iterator[None]:
    """Hold the index folder for one build: refuse a folder that is not (or not only) an index, and refuse a second
    build while one runs; a dangling CURRENT is repaired first."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / MANIFEST).exists() and not (root / CURRENT).exists():
        _refuse_foreign(root, set())  # not an index yet: it must be empty before the lock file goes in
    filelock = require("filelock", "rag")
    lock = filelock.FileLock(str(root / LOCK), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise OnecardError(f"another build of the index at {root} is running (it holds {root / LOCK})",
                           "wait for it to finish, then run this one again") from None
    try:
        own = versions(root)
        _refuse_foreign(root, set(own))  # under the lock, the folder and the manifest agree
        if not (root / MANIFEST).exists():
            write_json_atomic(root / MANIFEST, {"versions": own})  # a new index, or one built before manifests
        for tmp in root.iterdir():
            if tmp.name.startswith(_TEMP_PREFIXES) and tmp.name.endswith(".tmp"):
                tmp.unlink()
        current = current_version(root)
        if current is None:
            (root / CURRENT).unlink(missing_ok=True)
        elif _named(root) != current:
            set_current(root, current)
        yield
    finally:
        lock.release()


def versions(root: Path) -> dict[str, dict[str, Any]]:
    """The version folders the index created, by name: from its manifest, or (an index built before manifests)
    the folders whose meta.json names them."""
    if (root / MANIFEST).is_file():
        return dict(json.loads((root / MANIFEST).read_text(encoding="utf-8"))["versions"])
    found = {}
    for folder in sorted(root.glob("v-*")):
        meta = _meta(folder)
        if meta is not None and meta.get("version") == folder.name:
            found[folder.name] = {"collection": meta.get("collection"), "qdrant_url": meta.get("qdrant_url")}
    return found


def current_version(root: Path) -> str | None:
    """The version to read: the one CURRENT names when it is complete, else the newest complete one (CURRENT is
    dangling: its folder was deleted); None when no complete version is left."""
    named = _named(root)
    if named is not None and named in versions(root) and _meta(root / named) is not None:
        return named
    complete = {v: m for v in versions(root) if (m := _meta(root / v)) is not None}
    return max(complete, key=lambda v: str(complete[v].get("created_at", "")), default=None)


def add_version(root: Path, version: str, info: dict[str, Any]) -> None:
    """Record a version in the manifest before its folder exists, so that a killed build's leftovers are known."""
    write_json_atomic(root / MANIFEST, {"versions": versions(root) | {version: info}})


def remove_versions(root: Path, keep: set[str]) -> None:
    """Delete the index's own versions (folders and Qdrant collections) except `keep` and the one CURRENT names."""
    named = _named(root)
    own = versions(root)
    for version, info in list(own.items()):
        if version in keep or version == named:
            continue
        shutil.rmtree(root / version, ignore_errors=True)
        if info.get("qdrant_url"):
            with contextlib.suppress(Exception):  # an unreachable server keeps a stale collection, not the build
                drop_collection(info["qdrant_url"], info["collection"])
        if not (root / version).exists():
            del own[version]
    write_json_atomic(root / MANIFEST, {"versions": own})


def set_current(root: Path, version: str) -> None:
    write_json_atomic(root / CURRENT, {"version": version})


def _named(root: Path) -> str | None:
    try:
        return str(json.loads((root / CURRENT).read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _meta(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _refuse_foreign(root: Path, own: set[str]) -> None:
    foreign = sorted(p.name for p in root.iterdir() if p.name not in _OWN_FILES | own
                     and not (p.name.startswith(_TEMP_PREFIXES) and p.name.endswith(".tmp")))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OnecardError(f"{root} holds files that are not this index's ({shown}); onecard builds an index only "
                           "in an empty folder or one of its own, and never deletes what it did not create",
                           "pass an --index-dir that is new or empty (or leave it out: the data directory), "
                           "or move those files out")
