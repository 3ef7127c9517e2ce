"""`pyserving classify PATH...` over folders: told by content, concurrent, rows out, Ctrl-C."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.onnx_models import png, publish, write_image_servable, write_text_servable
from tests.processes import RunningProcess, run_cli, start_serve, wait_for

RED, GREEN, BLUE = (250, 0, 0), (0, 250, 0), (0, 0, 250)


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server with `colours` (image, the default) and `letters` (text)."""
    root = tmp_path_factory.mktemp("tiny")
    publish(root / "colours", 1, write_image_servable)
    publish(root / "letters", 1, write_text_servable)
    config = root / "models.toml"
    config.write_text(
        'default = "colours"\n'
        '[[models]]\nname = "colours"\nbase_path = "colours"\n'
        '[[models]]\nname = "letters"\nbase_path = "letters"\n'
    )
    server: RunningProcess = start_serve(root / "server.log", "--model_config_file", str(config))
    yield f"127.0.0.1:{server.match.group(1)}"
    server.stop()


def classify(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("classify", *args, timeout=60, cwd=cwd)


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Photos in nested folders, a text file, a broken JPEG, and an empty file."""
    folder = tmp_path / "photos"
    (folder / "b" / "deeper").mkdir(parents=True)
    (folder / "a.png").write_bytes(png(RED))
    (folder / "b" / "green.dat").write_bytes(png(GREEN))  # the name says nothing
    (folder / "b" / "deeper" / "blue.png").write_bytes(png(BLUE))
    (folder / "b" / "notes.txt").write_text("not a photo\n")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    (folder / "empty").write_bytes(b"")
    return folder


def test_folder_to_csv_one_row_per_file(tiny_server: str, mixed: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    result = classify(str(mixed), "--server", tiny_server, "--output", str(out))
    assert result.returncode == 1, result.stderr  # the broken JPEG was not classified
    rows = {
        Path(r["path"]).relative_to(mixed).as_posix(): r
        for r in csv.DictReader(io.StringIO(out.read_text()))
    }
    assert sorted(rows) == [
        "a.png",
        "b/deeper/blue.png",
        "b/green.dat",
        "b/notes.txt",
        "broken.jpg",
        "empty",
    ]
    assert {k: r["status"] for k, r in rows.items()} == {
        "a.png": "ok",
        "b/deeper/blue.png": "ok",
        "b/green.dat": "ok",
        "b/notes.txt": "skipped",
        "broken.jpg": "error",
        "empty": "skipped",
    }
    assert [rows[k]["class_1"] for k in ("a.png", "b/green.dat", "b/deeper/blue.png")] == [
        "red",
        "green",
        "blue",
    ]
    assert float(rows["a.png"]["score_1"]) > 0.9
    assert rows["a.png"]["model"] == "colours" and rows["a.png"]["version"] == "1"
    assert "could not decode image" in rows["broken.jpg"]["error"]
    assert rows["b/notes.txt"]["error"].startswith("not an image")
    assert "6 files" in result.stderr and "3 classified, 1 failed, 2 skipped" in result.stderr


def test_folder_to_jsonl_and_all_classified_exits_0(tiny_server: str, tmp_path: Path) -> None:
    folder = tmp_path / "ok"
    folder.mkdir()
    for i, colour in enumerate([RED, GREEN, BLUE] * 4):
        (folder / f"{i:02}.png").write_bytes(png(colour))
    (folder / "README").write_text("photos of colours")  # skipped: not a failure
    out = tmp_path / "results.jsonl"
    result = classify(
        str(folder), "--server", tiny_server, "--output", str(out), "--concurrency", "3"
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 13
    ok = sorted((line for line in lines if line["status"] == "ok"), key=lambda r: r["path"])
    assert [r["classes"][0]["name"] for r in ok] == ["red", "green", "blue"] * 4
    assert ok[0]["classes"][0]["index"] == 0 and ok[0]["model"] == "colours"
    assert [line["status"] for line in lines].count("skipped") == 1


def test_text_model_takes_the_text_files(tiny_server: str, tmp_path: Path) -> None:
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "one").write_text("aaaa b")
    (folder / "two.md").write_text("bbb bbb a")
    (folder / "photo.png").write_bytes(png(RED))
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    result = classify(str(folder), "--server", tiny_server, "--model", "letters")
    assert result.returncode == 0, result.stderr
    said = dict(line.split("  ", 1) for line in result.stdout.splitlines())
    assert said[str(folder / "one")].startswith("a ")
    assert said[str(folder / "two.md")].startswith("b ")
    assert said[str(folder / "photo.png")] == "skipped: not a UTF-8 text"
    assert said[str(folder / "latin1.txt")] == "skipped: not a UTF-8 text"


def test_a_file_named_itself_is_sent_and_its_error_counts(tiny_server: str, tmp_path: Path) -> None:
    note = tmp_path / "note.txt"
    note.write_text("hello")
    out = tmp_path / "r.csv"
    result = classify(str(note), "--server", tiny_server, "--output", str(out))
    assert result.returncode == 1
    (row,) = csv.DictReader(io.StringIO(out.read_text()))
    assert row["status"] == "error" and "could not decode image" in row["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--output", "r.txt"], "give a .csv or a .jsonl file"),
        (["--concurrency", "0"], "--concurrency must be at least 1"),
        (["missing-folder", "--output", "r.csv"], "missing-folder: no such file or folder"),
        (["--output", "r.csv", "--text", "hi"], "--feature and --text take no files"),
        (["--top-k", "-3"], "--top-k: must be a positive integer up to 2,147,483,647, got '-3'"),
        (["--top-k", "0"], "--top-k: must be a positive integer"),
        (["--top-k", "99999999999"], "--top-k: must be a positive integer"),
        (["--top-k", "five"], "--top-k: must be a positive integer"),
    ],
)
def test_bad_usage_exits_2(tiny_server: str, tmp_path: Path, args: list[str], message: str) -> None:
    photo = tmp_path / "p.png"
    photo.write_bytes(png(RED))
    result = classify(str(photo), *args, "--server", tiny_server, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_few_files_keep_the_tables(tiny_server: str, tmp_path: Path) -> None:
    photo = tmp_path / "red.png"
    photo.write_bytes(png(RED))
    result = classify(str(photo), "--server", tiny_server)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert "model colours, version 1" in lines[0]
    assert lines[2].split()[:2] == ["1", "red"]


def test_a_reader_that_leaves_early_ends_it_quietly(tiny_server: str) -> None:
    """`pyserving classify ... | head -1`: no BrokenPipeError, no traceback."""
    # Ten 20 kB texts: each table's first line quotes its text, so the output is larger
    # than a pipe holds and writing it must meet the closed end.
    texts = [arg for i in range(10) for arg in ("--text", "ab"[i % 2] * 20_000)]
    command = [sys.executable, "-m", "pyserving", "classify", *texts, "--model", "letters"]
    process = subprocess.Popen(
        [*command, "--server", tiny_server], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.read(100)
    process.stdout.close()  # as `head` does once it has what it wanted
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=60) == 1
    assert first.startswith(b"'aaaa")
    assert stderr == ""


def big_png(rgb: tuple[int, int, int]) -> bytes:
    """A 2000×2000 PNG: tens of milliseconds to decode, so a run takes seconds."""
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 8, (2000, 2000, 3), dtype=np.uint8)
    Image.fromarray(noise + np.array(rgb, dtype=np.uint8) // 2).save(buffer, format="PNG")
    return buffer.getvalue()


def test_rows_come_in_sorted_order_though_files_finish_out_of_order(
    tiny_server: str, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "000-big.png").write_bytes(big_png(BLUE))  # slow: finishes after the rest
    for i in range(1, 12):
        (folder / f"{i:03d}.png").write_bytes(png(RED if i % 2 else GREEN))
    out = tmp_path / "results.jsonl"
    result = classify(str(folder), "--server", tiny_server, "--output", str(out))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["path"]).name for r in rows] == sorted(p.name for p in folder.iterdir())
    assert [r["classes"][0]["name"] for r in rows][:3] == ["blue", "red", "green"]


def test_ctrl_c_keeps_the_rows_done(tiny_server: str, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    data = big_png(RED)
    for i in range(300):
        (folder / f"{i:03}.png").write_bytes(data)
    out = tmp_path / "partial.csv"
    # As at a terminal, where Ctrl-C reaches the foreground program: a runner started in the
    # background of a script ignores SIGINT, and a child would inherit that.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "pyserving", "classify", str(folder), "--server", tiny_server,
             "--output", str(out), "--concurrency", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        wait_for(
            lambda: out.exists() and len(out.read_text().splitlines()) > 5, 60, "5 rows written"
        )
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted:" in stderr and "Traceback" not in stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert 5 <= len(rows) < 300
    assert all(r["status"] == "ok" and r["class_1"] == "red" for r in rows)
    assert f"{len(rows)} of 300 files done" in stderr


def test_progress_bar_on_a_terminal(tiny_server: str, tmp_path: Path) -> None:
    folder = tmp_path / "few"
    folder.mkdir()
    for i in range(40):
        (folder / f"{i:02}.png").write_bytes(png(BLUE))
    parent, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "pyserving", "classify", str(folder), "--server", tiny_server,
         "--output", str(tmp_path / "r.csv")],
        stdout=subprocess.DEVNULL,
        stderr=child,
    )  # fmt: skip
    os.close(child)
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([parent], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(parent, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        elif process.poll() is not None:
            break
    os.close(parent)
    assert process.wait(10) == 0
    text = seen.decode()
    assert "\r\x1b[K[" in text and "/40 files" in text and "files/s" in text
    assert "40 files in" in text and "40 classified, 0 failed, 0 skipped" in text


def test_plain_progress_lines_when_not_a_terminal(tiny_server: str, tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "x.png").write_bytes(png(GREEN))
    result = classify(str(folder), "--server", tiny_server, "--output", str(tmp_path / "r.csv"))
    assert result.returncode == 0
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("1 file in")
