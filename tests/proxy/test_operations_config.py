"""Pure parts of the operational settings: config validation, what SIGHUP applies,
the SASL mechanism list the client is shown, TLS contexts per sslmode."""

from __future__ import annotations

import ssl
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from proxy import config as configuration
from proxy import tls
from proxy.config import Config, ConfigError, ListenConfig, LogConfig, UpstreamConfig
from proxy.reload import changes


def _sasl(*names: bytes) -> bytes:
    body = struct.pack("!i", 10) + b"".join(n + b"\0" for n in names) + b"\0"
    return b"R" + struct.pack("!i", len(body) + 4) + body


def test_channel_binding_mechanism_is_removed_from_authentication_sasl() -> None:
    offered = _sasl(b"SCRAM-SHA-256-PLUS", b"SCRAM-SHA-256")
    assert tls.strip_channel_binding(offered) == (
        b"R\x00\x00\x00\x17\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00"
    )


@pytest.mark.parametrize(
    "frame",
    [
        _sasl(b"SCRAM-SHA-256"),
        b"R\x00\x00\x00\x08\x00\x00\x00\x00",  # AuthenticationOk
        b"R\x00\x00\x00\x0c\x00\x00\x00\x05salt",  # MD5 password
    ],
)
def test_other_authentication_messages_are_kept_as_they_are(frame: bytes) -> None:
    assert tls.strip_channel_binding(frame) is frame


@pytest.mark.parametrize(
    "upstream, mode",
    [
        (UpstreamConfig(), "prefer"),
        (UpstreamConfig(sslrootcert="/ca.crt"), "verify-full"),
        (UpstreamConfig(sslrootcert="/ca.crt", sslmode="require"), "require"),
        (UpstreamConfig(sslmode="disable"), "disable"),
    ],
)
def test_sslmode_defaults_to_verification_when_a_ca_is_given(
    upstream: UpstreamConfig, mode: str
) -> None:
    assert upstream.effective_sslmode == mode


def test_unverified_modes_do_not_check_the_certificate() -> None:
    context = tls.upstream_context(UpstreamConfig(sslmode="require"))
    assert context is not None
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)
    assert tls.upstream_context(UpstreamConfig(sslmode="disable")) is None


@pytest.mark.parametrize(
    "body, message",
    [
        ("[listen]\nssl = true\n", "needs ssl_cert_file and ssl_key_file"),
        ("[upstream]\nsslmode = 'sometimes'\n", "is not one of disable"),
        ("[upstream]\nsslmode = 'verify-ca'\n", "needs sslrootcert"),
        ("[upstream]\nsslrootcert = 3\n", "expected str"),
        ("[listen]\nidle_timeout = -1\n", "must not be negative"),
        ("[log]\nlevel = 'loud'\n", "is not one of debug"),
        ("[metrics]\nport = 'x'\n", "expected int"),
    ],
)
def test_bad_operational_settings_are_named(
    tmp_path: Path, body: str, message: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message):
        configuration.load(path)


def test_defaults_keep_tls_metrics_and_idle_timeout_off() -> None:
    config = Config()
    assert not config.listen.ssl and config.listen.idle_timeout == 0
    assert not config.metrics.enabled and config.metrics.host == "127.0.0.1"


def test_reload_applies_safe_settings_and_keeps_the_rest() -> None:
    old = Config()
    new = replace(
        old,
        listen=replace(old.listen, port=7000, max_clients=5, idle_timeout=3.0),
        upstream=replace(old.upstream, host="127.0.0.2", connect_timeout=1.0),
        log=LogConfig(level="debug", sql_text=True),
    )
    running, applied, restart = changes(old, new)
    assert applied == [
        "listen.max_clients",
        "listen.idle_timeout",
        "upstream.connect_timeout",
        "log.level",
        "log.sql_text",
    ]
    assert restart == ["listen.port", "upstream.host"]
    assert running.listen == replace(ListenConfig(), max_clients=5, idle_timeout=3.0)
    assert running.upstream.host == old.upstream.host
    assert running.upstream.connect_timeout == 1.0


def test_config_example_names_every_setting_and_only_those() -> None:
    import re
    import tomllib
    from dataclasses import fields

    example = Path(__file__).parents[2] / "config.example.toml"
    # Settings shown commented out (no default value) count as named too.
    text = re.sub(r"(?m)^# (\w+ = )", r"\1", example.read_text())
    named = {
        (section, key)
        for section, values in tomllib.loads(text).items()
        for key in values
    }
    declared = {
        (section.name, setting.name)
        for section in fields(Config)
        for setting in fields(getattr(Config(), section.name))
    }
    assert named == declared
