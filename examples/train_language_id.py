"""A 14-language identifier end to end: fetch man pages, train, export, serve, classify.

    python examples/train_language_id.py [--workdir DIR]

Debian's translated man pages give real prose in 13 languages (fetched with `apt-get
download`, unpacked with `dpkg -x`, nothing installed); the English pages are the ones
already under /usr/share/man. The text stays on this machine: most of it is GPL.
Pages are split between training and held-out sentences, so no page is in both. A
character 1–3-gram TF-IDF and a logistic regression are trained with scikit-learn,
exported with `pyserving export sklearn --input text`, served, and every held-out
sentence is classified over gRPC. Needs `pip install 'pyserving[sklearn]'`, Debian or
Ubuntu with apt sources for the manpages-* packages. Exits 0 when the server agrees with
scikit-learn on every held-out sentence.
"""

from __future__ import annotations

import argparse
import gzip
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

# language → (Debian package, folder under usr/share/man)
PACKAGES = {
    "cs": ("manpages-cs", "cs"),
    "da": ("manpages-da", "da"),
    "de": ("manpages-de", "de"),
    "es": ("manpages-es", "es"),
    "fi": ("manpages-fi", "fi"),
    "fr": ("manpages-fr", "fr"),
    "it": ("manpages-it", "it"),
    "nl": ("manpages-nl", "nl"),
    "pl": ("manpages-pl", "pl"),
    "pt": ("manpages-pt-br", "pt_BR"),  # manpages-pt is an empty dummy package
    "ru": ("manpages-ru", "ru"),
    "sv": ("manpages-sv", "sv"),
    "uk": ("manpages-uk", "uk"),
}
LANGUAGES = ("en", *PACKAGES)
ENGLISH_PAGES = Path("/usr/share/man")
TRAIN_PER_LANGUAGE = 1500
HELD_OUT_PER_LANGUAGE = 200
MIN_CHARS = 40
# roff escapes: fonts (\fB, \f(CW, \f[I]), special characters (\(em, \[u00E9]), sizes,
# strings and the zero-width ones; what is left of a line is its text.
_ROFF = re.compile(
    r"\\f(?:\(..|\[[^\]]*\]|.)|\\\(..|\\\[[^\]]*\]|\\s[+-]?\d+|\\\*(?:\(..|\[[^\]]*\]|.)|\\."
)
# Untranslated English lines are common in translated pages (a quarter of the Czech ones).
_ENGLISH = frozenset(
    [
        "the",
        "and",
        "of",
        "to",
        "is",
        "a",
        "in",
        "that",
        "for",
        "with",
        "this",
        "are",
        "be",
        "or",
        "by",
        "if",
        "not",
        "on",
        "as",
        "it",
        "an",
        "which",
        "from",
        "can",
        "will",
        "when",
        "you",
        "your",
        "file",
        "files",
    ]
)
READY = re.compile(r"gRPC listening on [^\s]+:(\d+)")


@dataclass(frozen=True)
class Corpus:
    """Sentences and their language, split by page into training and held-out sets."""

    train: list[str]
    train_labels: list[str]
    held_out: list[str]
    held_out_labels: list[str]


def pyserving(*args: str) -> list[str]:
    """The `pyserving` command of this Python, as a subprocess argument list."""
    return [sys.executable, "-m", "pyserving", *args]


def fetch(folder: Path, timeout: float = 120.0) -> Path:
    """Download the translated man pages into `folder` and unpack them; the unpacked root.

    Raises subprocess.CalledProcessError or TimeoutExpired when apt cannot fetch them.
    """
    debs = folder / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    packages = [package for package, _ in PACKAGES.values()]
    if len(list(debs.glob("*.deb"))) < len(packages):
        subprocess.run(
            ["apt-get", "update", "-qq"], check=False, timeout=timeout, capture_output=True
        )
        subprocess.run(
            ["apt-get", "download", *packages],
            cwd=debs,
            check=True,
            timeout=timeout,
            capture_output=True,
        )
    root = folder / "root"
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True, timeout=timeout)
    return root


def page_lines(path: Path) -> list[str]:
    """The prose lines of one gzipped man page: roff requests and escapes removed."""
    try:
        text = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
    except (OSError, EOFError):
        return []
    lines = []
    for raw in text.splitlines():
        if raw.startswith((".", "'", '\\"')):
            continue
        line = " ".join(_ROFF.sub("", raw).replace("\\", "").split())
        if _prose(line):
            lines.append(line)
    return lines


def _prose(line: str) -> bool:
    if len(line) < MIN_CHARS or any(mark in line for mark in ("@", "://", "/", "<", "=", "[")):
        return False
    return sum(c.isalpha() or c == " " for c in line) >= 0.9 * len(line)


def _english(line: str) -> bool:
    words = line.lower().split()
    return sum(w in _ENGLISH for w in words) >= max(2, 0.15 * len(words))


def pages(root: Path, english_pages: int = 400) -> dict[str, list[list[str]]]:
    """Each language's pages as lists of prose lines; English lines dropped from the rest."""
    found: dict[str, list[list[str]]] = {}
    for language, (_, sub) in PACKAGES.items():
        files = sorted((root / "usr/share/man" / sub).rglob("*.gz"))
        found[language] = [[x for x in page_lines(f) if not _english(x)] for f in files]
    english = sorted(ENGLISH_PAGES.glob("man[1-8]/*.gz"))
    random.Random(0).shuffle(english)
    found["en"] = [page_lines(f) for f in english[:english_pages]]
    return found


def split(
    by_language: dict[str, list[list[str]]],
    train_per_language: int = TRAIN_PER_LANGUAGE,
    held_out_per_language: int = HELD_OUT_PER_LANGUAGE,
) -> Corpus:
    """A fifth of each language's pages held out; a bounded number of sentences from each."""
    corpus = Corpus([], [], [], [])
    for language in LANGUAGES:
        rng = random.Random(language)
        kept = [p for p in by_language.get(language, []) if p]
        rng.shuffle(kept)
        cut = max(1, len(kept) // 5)
        held = [x for p in kept[:cut] for x in p]
        train = [x for p in kept[cut:] for x in p]
        rng.shuffle(held)
        rng.shuffle(train)
        corpus.train.extend(train[:train_per_language])
        corpus.train_labels.extend([language] * len(train[:train_per_language]))
        corpus.held_out.extend(held[:held_out_per_language])
        corpus.held_out_labels.extend([language] * len(held[:held_out_per_language]))
    return corpus


def train(corpus: Corpus, path: Path) -> Any:
    """Fit the identifier (char 1–3-grams, TF-IDF, logistic regression); save it with joblib."""
    model = make_pipeline(
        TfidfVectorizer(analyzer="char", ngram_range=(1, 3), max_features=5000, lowercase=False),
        LogisticRegression(C=10, max_iter=1000),
    )
    model.fit(corpus.train, corpus.train_labels)
    joblib.dump(model, path)
    return model


def accuracy(model: Any, corpus: Corpus) -> float:
    """The share of held-out sentences scikit-learn labels correctly."""
    predicted = model.predict(corpus.held_out)
    return float(np.mean(predicted == np.array(corpus.held_out_labels)))


def export(model_file: Path, samples: Sequence[str], workdir: Path) -> Path:
    """`pyserving export sklearn --input text`, verified on the held-out sentences."""
    sample_file = workdir / "samples.txt"
    sample_file.write_text("\n".join(samples) + "\n", encoding="utf-8")
    command = pyserving(
        "export",
        "sklearn",
        str(model_file),
        "--input",
        "text",
        "--samples",
        str(sample_file),
        "--repository",
        str(workdir / "models"),
        "--name",
        "language",
    )
    print("$", " ".join(command[2:]))
    out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def serve(base_path: Path, log: Path, timeout: float = 60.0) -> tuple[subprocess.Popen[bytes], int]:
    """Start `pyserving serve` on a free port; wait for its ready line with a deadline."""
    with log.open("wb") as out:
        server = subprocess.Popen(
            pyserving(
                "serve",
                "--model_name",
                "language",
                "--model_base_path",
                str(base_path),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--rest_api_port",
                "0",
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = READY.search(log.read_text(errors="replace"))
        if match:
            return server, int(match.group(1))
        if server.poll() is not None:
            break
        time.sleep(0.05)
    server.kill()
    raise SystemExit(f"the server did not start:\n{log.read_text(errors='replace')}")


def main() -> int:
    from pyserving.client import Client

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        corpus = split(pages(fetch(workdir / "manpages")))
        print(
            f"read {len(corpus.train)} training and {len(corpus.held_out)} held-out "
            f"sentences in {time.perf_counter() - started:.1f} s"
        )
        started = time.perf_counter()
        model = train(corpus, workdir / "language.joblib")
        print(
            f"trained in {time.perf_counter() - started:.1f} s; held-out accuracy "
            f"{accuracy(model, corpus):.1%}"
        )
        version = export(workdir / "language.joblib", corpus.held_out, workdir)
        server, port = serve(version.parent, workdir / "server.log")
        try:
            address = f"127.0.0.1:{port}"
            expected = model.predict(corpus.held_out)
            with Client(address) as client:
                served = [client.classify(t.encode()).predictions[0].name for t in corpus.held_out]
            agree = int(np.sum(np.array(served) == expected))
            print(f"the server agrees with scikit-learn on {agree}/{len(expected)} sentences")
            command = pyserving(
                "classify",
                "--server",
                address,
                "--top-k",
                "3",
                "--text",
                "Der schnelle braune Fuchs springt über den Hund.",
            )
            print("$", " ".join(command[2:]))
            subprocess.run(command, check=True)
        finally:
            server.terminate()
            server.wait(30)
    return 0 if agree == len(expected) else 1


if __name__ == "__main__":
    sys.exit(main())
