"""The environment helpers fail loudly, naming the variable and the form it expects."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from webapp.env import env_bool, env_int, env_list, env_path, env_str


def test_a_missing_required_variable_is_named(monkeypatch):
    monkeypatch.delenv("ICON2_TEST_VAR", raising=False)
    with pytest.raises(ImproperlyConfigured, match="ICON2_TEST_VAR"):
        env_str("ICON2_TEST_VAR")


def test_defaults_apply_when_unset_or_blank(monkeypatch):
    monkeypatch.setenv("ICON2_TEST_VAR", "  ")
    assert env_str("ICON2_TEST_VAR", default="x") == "x"
    assert env_bool("ICON2_TEST_VAR", default=True) is True
    assert env_int("ICON2_TEST_VAR", default=3) == 3
    assert env_list("ICON2_TEST_VAR", default=["a"]) == ["a"]
    assert env_path("ICON2_TEST_VAR", default="~/x") == Path("~/x").expanduser()


@pytest.mark.parametrize("raw, expected", [("1", True), ("TRUE", True), ("yes", True), ("on", True), ("0", False), ("off", False)])
def test_booleans_accept_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("ICON2_TEST_VAR", raw)
    assert env_bool("ICON2_TEST_VAR") is expected


def test_a_malformed_boolean_says_what_to_write(monkeypatch):
    monkeypatch.setenv("ICON2_TEST_VAR", "maybe")
    with pytest.raises(ImproperlyConfigured, match=r"ICON2_TEST_VAR='maybe' is not a boolean; use one of 1/0"):
        env_bool("ICON2_TEST_VAR")


def test_integers_are_parsed_and_range_checked(monkeypatch):
    monkeypatch.setenv("ICON2_TEST_VAR", "42")
    assert env_int("ICON2_TEST_VAR", min_value=1, max_value=100) == 42
    monkeypatch.setenv("ICON2_TEST_VAR", "4x")
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        env_int("ICON2_TEST_VAR")
    monkeypatch.setenv("ICON2_TEST_VAR", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env_int("ICON2_TEST_VAR", min_value=1)


def test_lists_split_on_commas_and_drop_blanks(monkeypatch):
    monkeypatch.setenv("ICON2_TEST_VAR", "example.com, www.example.com,,")
    assert env_list("ICON2_TEST_VAR") == ["example.com", "www.example.com"]
    monkeypatch.setenv("ICON2_TEST_VAR", ",,")
    with pytest.raises(ImproperlyConfigured, match="comma-separated"):
        env_list("ICON2_TEST_VAR")


def test_paths_expand_the_home_folder(monkeypatch):
    monkeypatch.setenv("ICON2_TEST_VAR", "~/models")
    assert env_path("ICON2_TEST_VAR") == Path.home() / "models"
