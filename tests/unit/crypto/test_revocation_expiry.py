"""Certificate expiry: warnings at 30 and 7 days for every configured certificate, in the
log, the data `status` and the metrics read, and `certs check` (a fixed clock via `at=`)."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from adapter.cli.main import main
from adapter.config import load_settings
from adapter.crypto.expiry import certificate_expiry, level_of, log_expiry_warnings
from adapter.crypto.keys import load_certificates
from tests.conftest import write_config


@pytest.fixture
def settings(tmp_path, pki):
    extra = f"""
[[peers]]
name = "courts"
organisation_ids = ["000.00.00.T01"]
trust_anchors = ["{pki}/ca.crt"]
signer_certificates = ["{pki}/court.crt"]
"""
    return load_settings(write_config(tmp_path, pki, extra=extra))


def _ours(entries):
    return next(e for e in entries if "our signing certificate" in e.role)


@pytest.mark.parametrize(("days", "level"), [(31, "ok"), (30, "warning"), (8, "warning"),
                                             (7, "critical"), (0.5, "critical"),
                                             (-1, "expired")])
def test_levels_at_30_and_7_days(days, level):
    assert level_of(days) == level


def test_every_configured_certificate_is_listed_once_with_its_roles(settings, pki):
    entries = certificate_expiry(settings)
    by_subject = {e.subject: e for e in entries}
    assert len(by_subject) == len(entries)
    ca = load_certificates(pki / "ca.crt")[0].subject.rfc4514_string()
    court = load_certificates(pki / "court.crt")[0].subject.rfc4514_string()
    assert "our trust anchor" in by_subject[ca].role
    assert "trust anchor of peer courts" in by_subject[ca].role
    assert "timestamp authority CA" in by_subject[ca].role
    assert by_subject[court].role == "pinned signer of peer courts"
    assert _ours(entries).level == "ok"


def test_warning_at_30_days_and_error_at_7_days_in_the_log(settings, pki, caplog):
    end = load_certificates(pki / "adapter.crt")[0].not_valid_after_utc
    with caplog.at_level(logging.WARNING, logger="adapter.certificates"):
        assert log_expiry_warnings(settings, at=end - dt.timedelta(days=31)) == []
        due = log_expiry_warnings(settings, at=end - dt.timedelta(days=20))
    ours = _ours(due)
    assert ours.level == "warning" and round(ours.days) == 20
    rec = next(r for r in caplog.records if "THADS exchange adapter (dev)" in r.getMessage())
    assert rec.levelno == logging.WARNING
    assert "expires in 20 days, on " + end.strftime("%Y-%m-%d") in rec.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="adapter.certificates"):
        due = log_expiry_warnings(settings, at=end - dt.timedelta(days=6))
    assert _ours(due).level == "critical"
    assert any(r.levelno == logging.ERROR and "expires in 6 days" in r.getMessage()
               for r in caplog.records)
    expired = _ours(certificate_expiry(settings, at=end + dt.timedelta(days=1)))
    assert expired.level == "expired" and "EXPIRED on" in expired.line
    assert expired.as_dict()["days"] == -1.0


def test_an_unreadable_certificate_is_reported_not_raised(tmp_path, pki):
    s = load_settings(write_config(tmp_path, pki, extra=f"""
[[peers]]
name = "gone"
organisation_ids = ["000.00.00.T09"]
trust_anchors = ["{tmp_path}/missing.crt"]
"""))
    bad = [e for e in certificate_expiry(s) if e.level == "unreadable"]
    assert [e.role for e in bad] == ["trust anchor of peer gone"]
    assert "missing.crt" in bad[0].line


def test_certs_check_prints_days_and_levels(config_file, capsys):
    assert main(["--config", str(config_file), "certs", "check"]) == 0
    out = capsys.readouterr().out
    assert "our signing certificate" in out and "our trust anchor" in out
    assert "revocation:" in out and "not configured" in out
