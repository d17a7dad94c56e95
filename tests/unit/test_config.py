from pathlib import Path

import pytest

from magicflow.config import load_settings
from magicflow.errors import ConfigurationError


def test_defaults_when_nothing_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.broker == "memory://"
    assert settings.store is None


def test_flags_win_over_environment_which_wins_over_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "magicflow.toml").write_text(
        'store = "sqlite:///from-file.db"\nbroker = "redis://file"\nconcurrency = 7\n'
        'queues = ["a", "b"]\n'
    )
    env = {"MAGICFLOW_BROKER": "redis://env", "MAGICFLOW_CONCURRENCY": "9"}
    settings = load_settings({"concurrency": 11, "store": None}, environ=env)
    assert settings.store == "sqlite:///from-file.db"
    assert settings.broker == "redis://env"
    assert settings.concurrency == 11
    assert settings.queues == ("a", "b")


def test_environment_lists_are_comma_separated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={"MAGICFLOW_QUEUES": "default, email"}, config_file=None)
    assert settings.queues == ("default", "email")


def test_unknown_setting_in_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('stroe = "x"\n')
    with pytest.raises(ConfigurationError, match="unknown setting 'stroe'"):
        load_settings(environ={}, config_file=path)


def test_bad_number_is_one_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="concurrency"):
        load_settings(environ={"MAGICFLOW_CONCURRENCY": "many"})


def test_log_format_and_tracing_from_the_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "magicflow.toml").write_text('log_format = "json"\ntracing = true\n')
    settings = load_settings(environ={})
    assert (settings.log_format, settings.tracing) == ("json", True)
    settings = load_settings(environ={"MAGICFLOW_TRACING": "false", "MAGICFLOW_LOG_FORMAT": "text"})
    assert (settings.log_format, settings.tracing) == ("text", False)
