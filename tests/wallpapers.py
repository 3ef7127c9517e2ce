"""Real photographs from Debian's wallpaper packages, fetched once with apt and cached.

Two packages whose photographs are free (GPL-2+): MATE's `nature` backgrounds (a water
drop, leaves, flowers, a ladybird, grass, a storm, wood) and KDE Plasma's photographic
wallpapers (a pier, cups, a lake, boats, a leaf, a building, a kite, moss, a forest).
`apt-get download` fetches the .deb files (140 MB; no root needed, only apt's package
lists), `dpkg-deb -x` unpacks them, and only the photographs named here are kept (13 MB,
in CACHE, pytest's cache folder, which git ignores). Nothing fetched is committed.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

# pytest's cache folder (`config.cache.mkdir`), so `pytest --cache-clear` removes it too.
CACHE = Path(__file__).resolve().parent.parent / ".pytest_cache" / "d" / "debian-wallpapers"
_PLASMA = "usr/share/wallpapers/{}/contents/images/2560x1600.jpg"
# Package → the photographs kept from it: name → path inside the package.
PHOTOS: dict[str, dict[str, str]] = {
    "mate-backgrounds": {
        name: f"usr/share/backgrounds/mate/nature/{name}.jpg"
        for name in (
            "Aqua",
            "Blinds",
            "Dune",
            "FreshFlower",
            "Garden",
            "GreenMeadow",
            "LadyBird",
            "RainDrops",
            "Storm",
            "TwoWings",
            "Wood",
            "YellowFlower",
        )
    },
    "plasma-workspace-wallpapers": {
        name: _PLASMA.format(name)
        for name in (
            "BytheWater",
            "ColdRipple",
            "ColorfulCups",
            "DarkestHour",
            "EveningGlow",
            "FallenLeaf",
            "Grey",
            "Kite",
            "OneStandsOut",
            "Path",
            "summer_1am",
        )
    },
}


class Unavailable(Exception):
    """This machine cannot have the photographs: no apt (not Debian), said in one line."""


class FetchFailed(Exception):
    """apt or dpkg-deb is there but failed, said in one line."""


def photographs(cache: Path = CACHE) -> list[Path]:
    """Every photograph in PHOTOS, fetched into `cache` on the first call; sorted by name.

    Raises Unavailable where apt-get or dpkg-deb is missing, FetchFailed where they fail
    (no package lists: run `apt-get update`; no network; a package without a named file).
    """
    paths = sorted(
        (cache / package / f"{name}.jpg" for package, files in PHOTOS.items() for name in files),
        key=lambda path: path.stem.lower(),
    )
    if all(path.is_file() for path in paths):
        return paths
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} is not on PATH: the photographs come from Debian packages")
    for package, files in PHOTOS.items():
        if not all((cache / package / f"{name}.jpg").is_file() for name in files):
            _fetch(package, files, cache / package)
    return paths


def _fetch(package: str, files: dict[str, str], folder: Path) -> None:
    with tempfile.TemporaryDirectory() as temp:
        download = _run(["apt-get", "download", package], Path(temp))
        debs = sorted(Path(temp).glob(f"{package}_*.deb"))
        if not debs:
            raise FetchFailed(f"apt-get download {package} wrote no .deb: {download}")
        unpacked = Path(temp) / "unpacked"
        _run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], Path(temp))
        folder.mkdir(parents=True, exist_ok=True)
        for name, inside in files.items():
            source = unpacked / inside
            if not source.is_file():
                raise FetchFailed(f"{debs[0].name} has no {inside}")
            target = folder / f"{name}.jpg"
            # Written whole or not at all: a stopped run leaves no half photograph.
            shutil.copyfile(source, target.with_suffix(".part"))
            target.with_suffix(".part").rename(target)


def _run(command: list[str], cwd: Path) -> str:
    """Run `command`; its last line of output, or FetchFailed with its last error line."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise FetchFailed(
            f"{' '.join(command)} failed (exit {done.returncode}): {lines[-1]}"
            + (" (run apt-get update first?)" if command[0] == "apt-get" else "")
        )
    return (done.stdout.strip().splitlines() or [""])[-1]
