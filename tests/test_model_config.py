from pathlib import Path

import pytest

from pyserving.core.model_config import read_model_config
from pyserving.core.settings import BatchingSettings, VersionPolicy
from pyserving.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def test_reads_models_policies_and_batching(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
default = "b"
[[models]]
name = "a"
base_path = "models/a"
[[models]]
name = "b"
base_path = "/srv/b"
version_policy = "specific"
versions = [3, 1]
[models.batching]
max_batch_size = 4
""",
    )
    models, default = read_model_config(path)
    assert default == "b"
    assert [m.name for m in models] == ["a", "b"]
    assert models[0].base_path == tmp_path / "models" / "a"
    assert models[0].policy == VersionPolicy("latest", num_versions=1)
    assert models[1].base_path == Path("/srv/b")
    assert models[1].policy == VersionPolicy("specific", versions=(1, 3))
    assert models[1].batching == BatchingSettings(max_batch_size=4)


def test_batching_keys_left_out_take_the_server_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[models]]\nname = "x"\nbase_path = "x"\n'
        "[models.batching]\nmax_batch_size = 2\nbatch_timeout_micros = 0\n",
    )
    server = BatchingSettings(max_batch_size=16, batch_timeout_micros=500, max_enqueued_batches=3)
    (model,), _ = read_model_config(path, server)
    assert model.batching == BatchingSettings(
        max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=3
    )


def test_default_is_the_first_model(tmp_path: Path) -> None:
    path = write(tmp_path, '[[models]]\nname = "x"\nbase_path = "x"\n')
    assert read_model_config(path)[1] == "x"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[[models]]\nname = "x"\nbase_path = \n', "not valid TOML.*line 3"),
        ("", "at least one"),
        ('[[models]]\nname = "x"\n', "model 'x': base_path"),
        ('[[models]]\nname = "x"\nbase_path = "x"\nversion_policy = "newest"\n', "'newest'"),
        ('[[models]]\nname = "x"\nbase_path = "x"\nnum_versions = 0\n', "num_versions"),
        ('[[models]]\nname = "x"\nbase_path = "x"\nbasepath = "y"\n', "unknown key 'basepath'"),
        ('default = "y"\n[[models]]\nname = "x"\nbase_path = "x"\n', "default = 'y'"),
        (
            '[[models]]\nname = "x"\nbase_path = "x"\n[[models]]\nname = "x"\nbase_path = "y"\n',
            "listed twice",
        ),
        (
            '[[models]]\nname = "x"\nbase_path = "x"\n[models.batching]\nmax_batch = 2\n',
            "unknown batching key 'max_batch'",
        ),
        (
            '[[models]]\nname = "x"\nbase_path = "x"\n[models.batching]\nmax_batch_size = 0\n',
            "batching.max_batch_size must be a positive integer",
        ),
        (
            '[[models]]\nname = "x"\nbase_path = "x"\n[models.batching]\n'
            "batch_timeout_micros = -1\n",
            "batching.batch_timeout_micros must be a non-negative integer",
        ),
    ],
)
def test_errors_name_the_file_and_key(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=problem) as info:
        read_model_config(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        read_model_config(tmp_path / "nope.toml")
