"""`[service] sign_workers`: a number, or "auto" (the default) sized to the machine."""

from __future__ import annotations

import pytest

from adapter.config import load_settings, usable_cores
from adapter.errors import ConfigError
from adapter.kinds import CHANNELS


def _settings(tmp_path, service: str = "", environ: dict | None = None):
    p = tmp_path / "adapter.toml"
    p.write_text('[adapter]\norganisation_id = "000.00.00.G15"\n' + service, encoding="utf-8")
    return load_settings(p, environ=environ or {})


def test_auto_is_the_default_and_leaves_one_core_to_the_main_process(tmp_path, monkeypatch):
    s = _settings(tmp_path)
    assert s.service.sign_workers == "auto"
    assert s.service.sign_worker_count == max(1, usable_cores() - 1)
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(8)))
    assert s.service.sign_worker_count == 7
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0})
    assert s.service.sign_worker_count == 1  # one core: still one worker


def test_a_number_is_kept_and_nonsense_is_refused(tmp_path):
    assert _settings(tmp_path, "[service]\nsign_workers = 3\n").service.sign_worker_count == 3
    assert _settings(tmp_path, "[service]\nsign_workers = 0\n").service.sign_worker_count == 0
    env = {"THADS__SERVICE__SIGN_WORKERS": "2"}
    assert _settings(tmp_path, environ=env).service.sign_worker_count == 2
    with pytest.raises(ConfigError, match="sign_workers"):
        _settings(tmp_path, '[service]\nsign_workers = "many"\n')
    with pytest.raises(ConfigError, match="sign_workers"):
        _settings(tmp_path, "[service]\nsign_workers = 99\n")


def test_every_channel_has_a_transport_constructor():
    from adapter.engine.context import TRANSPORTS

    assert set(TRANSPORTS) == set(CHANNELS)
