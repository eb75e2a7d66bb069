"""The settings are declared once (pyai.config.SETTINGS): the configuration page's table and Config follow them."""

import argparse
import dataclasses
from pathlib import Path

import pytest

from pyai.admin import cli, settings_doc
from pyai.config import SETTINGS, Config, load, settings_table

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_configuration_page_table_is_the_generated_one():
    table = settings_doc.page_table(PAGE.read_text(encoding="utf-8"))
    assert table == settings_table(), f"docs/configuration.md is stale: run {settings_doc.COMMAND}"


def test_the_table_has_a_row_per_setting():
    rows = settings_table().splitlines()[2:]
    assert [row.split(" | ")[1] for row in rows] == [f"`{setting.env}`" for setting in SETTINGS]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda setting: setting.name)
def test_every_setting_has_a_pai_variable_and_help(setting):
    assert setting.env.startswith("PAI_")
    assert setting.help.strip() and "\n" not in setting.help
    assert "|" not in setting.help + setting.default + setting.default_note  # would split the table's cells


def test_names_variables_and_options_are_unique():
    assert len({setting.name for setting in SETTINGS}) == len(SETTINGS)
    assert len({setting.env for setting in SETTINGS}) == len(SETTINGS)
    assert len({(setting.section, setting.option) for setting in SETTINGS}) == len(SETTINGS)


def test_config_has_a_field_per_setting_and_the_file():
    names = [field.name for field in dataclasses.fields(Config)]
    assert names == [setting.name for setting in SETTINGS] + ["config_file", "defaulted"]


def test_every_default_is_valid(tmp_path):
    config = load(environ={"HOME": str(tmp_path)}, prepare=False)
    for setting in SETTINGS:
        assert getattr(config, setting.name) == setting.parse(setting.default)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.prefix = "/elsewhere"


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.flag], ids=lambda setting: setting.name)
def test_the_documented_flags_exist(setting):
    parser = argparse.ArgumentParser()
    cli._serve_options(parser)
    assert setting.flag in parser._option_string_actions
