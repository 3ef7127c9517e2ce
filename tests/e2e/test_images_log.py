"""A served model's log says once, at start, which decoder reads which images."""

from __future__ import annotations

from tests.processes import RunningProcess


def test_server_says_how_it_decodes_images(imagenet_server: RunningProcess) -> None:
    lines = [line for line in imagenet_server.output().splitlines() if "images: " in line]
    assert len(lines) == 1, imagenet_server.output()
    assert "JPEG decoded with simplejpeg" in lines[0]
    assert "resized with fast_image_resize" in lines[0]
