"""Configuration loading: TOML, environment overrides, validation, secret masking."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest

from kaleyra_async._config import Config, Secret
from kaleyra_async._config_file import load_config
from kaleyra_async._exceptions import ConfigError
from kaleyra_async._limits import DEFAULT_POD_HOSTS

KEY = "kx-VERY-SECRET-123"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_example_config_loads_with_every_documented_key() -> None:
    """config.example.toml is valid and its values reach the dataclasses."""
    example = Path(__file__).parent.parent / "config.example.toml"
    config = load_config(example, env={"KALEYRA_API_KEY": KEY})
    assert config.pod == "IN"
    assert config.dispatch.batch_size == 100
    assert config.http.transport == "aiohttp"
    assert set(config.pods) == {"IN", "SG", "EU", "NA"}


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    """KALEYRA_API_KEY and KALEYRA_SID win over the file."""
    path = write(tmp_path, '[account]\nsid = "HXFILE"\napi_key = "file-key"\npod = "sg"\n')
    config = load_config(path, env={"KALEYRA_API_KEY": KEY, "KALEYRA_SID": "HXENV"})
    assert config.sid == "HXENV"
    assert config.api_key.reveal() == KEY
    assert config.pod == "SG"
    assert config.host == DEFAULT_POD_HOSTS["SG"]


def test_api_key_env_names_another_variable(tmp_path: Path) -> None:
    """account.api_key_env reads the key from the variable it names."""
    path = write(tmp_path, '[account]\nsid = "HX1"\napi_key_env = "MY_KEY"\n')
    assert load_config(path, env={"MY_KEY": KEY}).api_key.reveal() == KEY


def test_pod_host_and_base_url_are_overridable(tmp_path: Path) -> None:
    """Every pod host can be replaced, and base_url beats the pod host."""
    path = write(
        tmp_path,
        '[account]\nsid = "HX1"\napi_key = "k"\npod = "SG"\n'
        '[pods.SG]\nhost = "https://api.ap.kaleyra.io"\nrate_per_s = 20\n',
    )
    config = load_config(path, env={})
    assert config.host == "https://api.ap.kaleyra.io"
    assert config.pod_config.rate_per_s == 20
    sandbox = load_config(path, env={"KALEYRA_BASE_URL": "http://127.0.0.1:8787/"})
    assert sandbox.host == "http://127.0.0.1:8787"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param('[account]\nsid="HX"\napi_key="k"\npod="XX"\n', "account.pod", id="pod"),
        pytest.param('[account]\nsid="HX"\n', "account.api_key", id="no-key"),
        pytest.param('[account]\napi_key="k"\n', "account.sid", id="no-sid"),
        pytest.param('[account]\nsid="HX"\napi_key="k"\ncolour=1\n', "account.colour", id="typo"),
        pytest.param('[account]\nsid=123\napi_key="k"\n', "account.sid", id="sid-type"),
        pytest.param('[account]\nsid="HX"\napi_key=123\n', "account.api_key", id="key-type"),
        pytest.param("[dispatch]\nbatch_size = 101\n", "dispatch.batch_size", id="batch-size"),
        pytest.param('[dispatch]\nconcurrency = "8"\n', "dispatch.concurrency", id="type"),
        pytest.param('[http]\ntransport = "curl"\n', "http.transport", id="literal"),
        pytest.param("[pods.XX]\nrate_per_s = 1\n", "pods.XX", id="unknown-pod"),
        pytest.param("[pods.IN]\nrate_per_s = 0\n", "pods.IN.rate_per_s", id="rate"),
        pytest.param("[retry]\nmax_attempts = 0\n", "retry.max_attempts", id="attempts"),
        pytest.param("[nonsense]\n", "nonsense", id="section"),
        pytest.param("[account\n", "not valid TOML", id="toml"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    """Every config error names the key that is wrong."""
    env = {"KALEYRA_API_KEY": "k", "KALEYRA_SID": "HX"} if "account" not in text else {}
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(write(tmp_path, text), env=env)


def test_a_wrong_type_is_an_error_even_when_the_environment_overrides_it(tmp_path: Path) -> None:
    """The environment wins over the file, but does not hide a mistake in it."""
    env = {"KALEYRA_API_KEY": "k", "KALEYRA_SID": "HX"}
    with pytest.raises(ConfigError, match=r"account\.sid: must be a string"):
        load_config(write(tmp_path, "[account]\nsid = 123\n"), env=env)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """An unreadable file is reported by name."""
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load_config(tmp_path / "missing.toml", env={})


def test_the_key_never_shows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """repr, str, logging and pickling of a config never reveal the key."""
    config = load_config(None, env={"KALEYRA_API_KEY": KEY, "KALEYRA_SID": "HX1"})
    caplog.set_level(logging.DEBUG)
    logging.getLogger("test").debug("config %s %r", config, config)
    for text in (repr(config), str(config), repr(config.api_key), caplog.text):
        assert KEY not in text
    with pytest.raises(TypeError):
        pickle.dumps(config.api_key)


def test_plain_string_key_is_wrapped() -> None:
    """Config(api_key="...") keeps only the masked Secret."""
    config = Config(sid="HX1", api_key=KEY)  # type: ignore[arg-type]
    assert isinstance(config.api_key, Secret)
    assert KEY not in repr(config)


def test_dry_run_needs_no_credentials() -> None:
    """require_credentials=False fills placeholders so a dry run works without an account."""
    config = load_config(None, env={}, require_credentials=False)
    assert config.sid and config.api_key


@pytest.mark.parametrize(
    ("account", "env", "where"),
    [
        pytest.param("", {"KALEYRA_API_KEY": KEY + "\n"}, "KALEYRA_API_KEY", id="default-var"),
        pytest.param(
            'api_key_env = "MY_KEY"\n', {"MY_KEY": KEY + "\r\n"}, "MY_KEY", id="api_key_env"
        ),
        pytest.param(f'api_key = "{KEY} "\n', {}, r"account\.api_key", id="file"),
    ],
)
def test_a_malformed_key_is_reported_where_it_came_from(
    tmp_path: Path, account: str, env: dict[str, str], where: str
) -> None:
    """A key with a line break or space is reported by its variable or key, never its value."""
    path = write(tmp_path, f'[account]\nsid = "HX1"\n{account}')
    with pytest.raises(ConfigError, match=where) as caught:
        load_config(path, env=env)
    assert KEY not in str(caught.value)
    if env:
        assert "account.api_key" not in str(caught.value)


def test_the_demo_config_can_only_reach_a_local_sandbox() -> None:
    """examples/demo.toml holds the sandbox's credentials: forgetting --base-url must not send
    them (or any SMS) to Kaleyra's host."""
    demo = Path(__file__).resolve().parents[1] / "examples" / "demo.toml"
    config = load_config(demo, env={})
    assert config.host == "http://127.0.0.1:8787"
