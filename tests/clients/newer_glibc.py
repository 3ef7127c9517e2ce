"""A newer C library, unpacked into a folder of its own, for a binary this system's is too old for.

perf_analyzer's wheel needs glibc 2.38; Debian 12 has 2.36. Debian 13's `libc6`,
`libstdc++6` and `libgcc-s1` are fetched with `apt-get download` from the mirror this
machine's own apt sources name (with a private apt configuration: the system's package
lists and installed packages are not touched), unpacked with `dpkg-deb -x`, and a program
runs through that folder's dynamic loader (`ld-linux-x86-64.so.2 --library-path`). Nothing
is installed system-wide.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

NEXT_SUITE = "trixie"  # Debian 13: glibc 2.41
PACKAGES = ("libc6", "libstdc++6", "libgcc-s1")
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
LOADER = "ld-linux-x86-64.so.2"


class Unavailable(Exception):
    """The newer C library cannot be had here; the message says why."""


def mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt sources use for its main archive."""
    texts = [p.read_text() for p in sorted(sources.glob("sources.list.d/*.sources"))]
    for text in texts:  # deb822: "URIs: http://... " in a stanza whose suites are the release
        for stanza in text.split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and "security" not in uris.group(1):
                return uris.group(1).rstrip("/")
    legacy = sources / "sources.list"
    if legacy.is_file():
        for line in legacy.read_text().splitlines():
            found = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+\S+\s+.*main", line)
            if found and "security" not in found.group(1):
                return found.group(1).rstrip("/")
    raise Unavailable(f"no Debian mirror found in {sources}'s sources")


def library_folder(folder: Path) -> Path:
    """The folder holding Debian 13's C library and its loader, fetched into `folder` once.

    Raises Unavailable when apt-get or dpkg-deb is missing or the download fails.
    """
    libraries = folder / "root" / "usr" / "lib" / "x86_64-linux-gnu"
    if (libraries / LOADER).is_file():
        return libraries
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} is not installed")
    if not KEYRING.is_file():
        raise Unavailable(f"{KEYRING} is missing (package debian-archive-keyring)")
    apt = folder / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "debs"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    source_list = apt / "sources.list"
    source_list.write_text(f"deb [signed-by={KEYRING}] {mirror()} {NEXT_SUITE} main\n")
    settings = [
        f"Dir::Etc::SourceList={source_list}",
        "Dir::Etc::SourceParts=/dev/null",
        f"Dir::State::Lists={apt / 'lists'}",
        f"Dir::Cache={apt / 'cache'}",
        "APT::Sandbox::User=root",  # the download folder is ours, not _apt's
    ]
    options = ["-qq", *(arg for setting in settings for arg in ("-o", setting))]
    for command in (["update"], ["download", *PACKAGES]):
        done = subprocess.run(
            ["apt-get", *options, *command],
            cwd=apt / "debs",
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise Unavailable(f"apt-get {command[0]} from {NEXT_SUITE} failed: {last}")
    unpacked = folder / "root.partial"
    shutil.rmtree(unpacked, ignore_errors=True)
    for deb in sorted((apt / "debs").glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True, timeout=120)
    shutil.rmtree(folder / "root", ignore_errors=True)
    unpacked.rename(folder / "root")  # complete, or not there at all
    return libraries


def command(binary: Path, libraries: Path) -> list[str]:
    """The argv prefix that runs `binary` with the C library in `libraries`."""
    return [str(libraries / LOADER), "--library-path", str(libraries), str(binary)]
