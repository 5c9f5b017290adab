"""PKCS#11 URIs in `[signing] key` are parsed strictly, each refusal naming the key and why;
the rotation keys of `[signing]` go together."""

from __future__ import annotations

import pytest

from adapter.config import load_settings
from adapter.crypto.pkcs11_uri import PinSource, is_pkcs11_uri, parse_pkcs11_uri
from adapter.errors import ConfigError
from tests.conftest import write_config

MODULE = "module-path=/usr/lib/softhsm/libsofthsm2.so"


def test_a_full_uri_gives_every_part():
    uri = parse_pkcs11_uri("pkcs11:token=THADS%20B%E1%BB%99;object=adapter;id=%01%a0;"
                           f"type=private?{MODULE}&pin-source=file:/etc/thads/token.pin")
    assert (uri.module_path, uri.token, uri.object, uri.id) == \
        ("/usr/lib/softhsm/libsofthsm2.so", "THADS Bộ", "adapter", b"\x01\xa0")
    assert uri.pin == PinSource("file", "/etc/thads/token.pin")
    assert uri.key_name == "label 'adapter' and id 01a0"


def test_the_pin_from_a_variable_and_the_token_by_serial_or_slot():
    uri = parse_pkcs11_uri(f"pkcs11:serial=a07f9b16;id=%07?{MODULE}&pin-source=env:HSM_PIN")
    assert uri.serial == "a07f9b16" and uri.pin == PinSource("env", "HSM_PIN")
    assert parse_pkcs11_uri(f"pkcs11:slot-id=3;object=k?{MODULE}&pin-source=env:P").slot_id == 3
    assert parse_pkcs11_uri(f"pkcs11:token=t;object=k?{MODULE}&pin-source=file:///run/p"
                            ).pin.where == "/run/p"


def test_only_the_scheme_makes_a_uri():
    assert is_pkcs11_uri("PKCS11:token=x") and not is_pkcs11_uri("certs/dev/adapter.key")


@pytest.mark.parametrize(("uri", "reason"), [
    (f"pkcs11:token=t;object=k?{MODULE}&pin-value=1234", "PIN must not be written"),
    ("pkcs11:token=t;object=k?module-name=softhsm2&pin-source=env:P",
     "module-name is not supported"),
    ("pkcs11:token=t;object=k?pin-source=env:P", "module-path is missing"),
    ("pkcs11:token=t;object=k?module-path=lib.so&pin-source=env:P", "must be an absolute"),
    (f"pkcs11:object=k?{MODULE}&pin-source=env:P", "no token named"),
    (f"pkcs11:token=t?{MODULE}&pin-source=env:P", "no key named"),
    (f"pkcs11:token=t;object=k?{MODULE}", "no PIN source"),
    (f"pkcs11:token=t;object=k?{MODULE}&pin-source=file:pin.txt", "absolute path"),
    (f"pkcs11:token=t;object=k?{MODULE}&pin-source=https://x/pin", "not file:"),
    (f"pkcs11:token=t;object=k?{MODULE}&pin-source=env:1BAD", "not file:"),
    (f"pkcs11:token=t;object=k;library-version=1?{MODULE}&pin-source=env:P",
     "'library-version' is not supported"),
    (f"pkcs11:token=t;token=u;object=k?{MODULE}&pin-source=env:P", "given twice"),
    (f"pkcs11:token=t;object=k%2?{MODULE}&pin-source=env:P", "'%2' is not a percent escape"),
    (f"pkcs11:token=t;object=k/x?{MODULE}&pin-source=env:P", "'/' must be percent-encoded"),
    (f"pkcs11:token=my token;object=k?{MODULE}&pin-source=env:P", "whitespace"),
    (f"pkcs11:token=t;object=k;type=public?{MODULE}&pin-source=env:P", "type=private"),
    (f"pkcs11:slot-id=x;object=k?{MODULE}&pin-source=env:P", "not a decimal"),
    (f"pkcs11:token=t;object=k;id=?{MODULE}&pin-source=env:P", "id is empty"),
    (f"pkcs11:token=t;object=k?{MODULE}&pin-source=env:P#x", "fragment"),
    (f"pkcs11:token=t;object?{MODULE}&pin-source=env:P", "is not name=value"),
])
def test_refusals_say_why(uri, reason):
    with pytest.raises(ValueError) as ei:
        parse_pkcs11_uri(uri)
    assert reason in str(ei.value)


def _settings(tmp_path, pki, signing: str):
    cfg = write_config(tmp_path, pki)
    text = cfg.read_text(encoding="utf-8")
    start, end = text.index("[signing]"), text.index("[lgsp]")
    cfg.write_text(text[:start] + "[signing]\n" + signing + "\n" + text[end:], encoding="utf-8")
    return lambda: load_settings(cfg, environ={})


def test_a_bad_uri_in_the_configuration_names_signing_key(tmp_path, pki):
    load = _settings(tmp_path, pki, f'key = "pkcs11:token=t;object=k?{MODULE}&pin-value=1"\n'
                                    f'cert = "{pki}/adapter.crt"')
    with pytest.raises(ConfigError) as ei:
        load()
    assert ei.value.key == "signing.key" and "pin-value" in ei.value.reason
    assert "=1" not in str(ei.value)  # the PIN written there is not repeated


def test_a_rotation_needs_key_certificate_and_moment_together(tmp_path, pki):
    load = _settings(tmp_path, pki, f'key = "{pki}/adapter.key"\ncert = "{pki}/adapter.crt"\n'
                                    f'next_key = "{pki}/adapter-ec.key"\n'
                                    "next_from = 2027-01-01T00:00:00+07:00")
    with pytest.raises(ConfigError) as ei:
        load()
    assert ei.value.key == "signing" and "next_cert missing" in ei.value.reason


def test_the_rotation_moment_needs_its_offset(tmp_path, pki):
    load = _settings(tmp_path, pki, f'key = "{pki}/adapter.key"\ncert = "{pki}/adapter.crt"\n'
                                    f'next_key = "{pki}/adapter-ec.key"\n'
                                    f'next_cert = "{pki}/adapter-ec.crt"\n'
                                    'next_from = "2027-01-01T00:00:00"')
    with pytest.raises(ConfigError) as ei:
        load()
    assert ei.value.key == "signing.next_from" and "UTC offset" in ei.value.reason


def test_a_passphrase_variable_is_not_a_token_pin(tmp_path, pki):
    load = _settings(tmp_path, pki, f'key = "pkcs11:token=t;object=k?{MODULE}&pin-source='
                                    f'env:P"\ncert = "{pki}/adapter.crt"\n'
                                    'key_passphrase_env = "THADS_KEY_PASS"')
    with pytest.raises(ConfigError, match="pin-source"):
        load()
