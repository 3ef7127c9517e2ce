"""One home per default: every server setting has its `serve` flag, with the same default."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from pyserving.cli.main import build_parser
from pyserving.client import DEFAULT_ADDRESS
from pyserving.core.settings import Settings, default_compiled_model_cache
from pyserving.units import MiB
from tests.test_cli import verb_parsers

# Settings a flag does not set one to one, and what sets them instead.
NOT_FLAGS = {
    "models": "--model_name with --model_base_path, or --model_config_file",
    "default_model": "the config file's `default`",
    "metrics_path": "--monitoring_config_file",
    "batching": "one flag per field (below)",
}
# Flags in other units than their setting: flag → (setting, the setting in the flag's unit).
CONVERTED = {
    "max_request_mib": ("max_request_bytes", lambda v: v / MiB),
    "max_header_kib": ("max_header_bytes", lambda v: v / 1024),
    "disable_cpu_mem_arena": ("cpu_memory_arena", lambda v: not v),
    "compiled_model_cache": ("compiled_model_cache", lambda v: str(v or "")),
}


def serve_defaults() -> dict[str, object]:
    return {a.dest: a.default for a in verb_parsers()["serve"]._actions if a.option_strings}


def test_every_setting_has_its_flag_with_the_same_default() -> None:
    flags = serve_defaults()
    defaults = Settings(models=())
    by_setting = {setting: (flag, convert) for flag, (setting, convert) in CONVERTED.items()}
    for field in dataclasses.fields(Settings):
        if field.name in NOT_FLAGS:
            continue
        value = getattr(defaults, field.name)
        flag, convert = by_setting.get(field.name, (field.name, lambda v: v))
        assert flag in flags, f"setting {field.name} has no --{flag}"
        assert flags[flag] == convert(value), f"--{flag}: {flags[flag]!r} != {value!r}"
    for field in dataclasses.fields(defaults.batching):
        assert flags[field.name] == getattr(defaults.batching, field.name), field.name


def test_the_cache_default_is_the_settings_one() -> None:
    assert Settings(models=()).compiled_model_cache == default_compiled_model_cache()
    assert serve_defaults()["compiled_model_cache"] == str(default_compiled_model_cache())


def test_every_remote_verb_defaults_to_the_clients_address() -> None:
    parsers = verb_parsers()
    for verb in ("classify", "predict", "status", "health", "web"):
        (server,) = [a for a in parsers[verb]._actions if a.dest == "server"]
        assert server.default == DEFAULT_ADDRESS, verb


def test_the_flags_page_is_generated_from_the_parser() -> None:
    from docs.generate_flags import flags_page

    page = Path(__file__).resolve().parents[1] / "docs" / "flags.md"
    assert page.read_text() == flags_page(build_parser()), (
        "docs/flags.md is out of date: run `make flags-doc`"
    )


def test_the_flags_page_names_every_option() -> None:
    from docs.generate_flags import flags_page

    text = flags_page(build_parser())
    for command, parser in verb_parsers().items():
        assert f"## pyserving {command}" in text
        for action in parser._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                assert f"`{action.option_strings[0]}" in text, (command, action.dest)
