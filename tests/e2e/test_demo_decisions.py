"""The shipped demo (config/adapter.toml, as `make run` uses it) sends each enforcement
decision over the document axis to the court that judged and to the procuracy supervising
the case; both answer through the simulated axis, and every decision ends delivered with a
01 and a 03 from each of the two."""

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import select

from adapter.config import load_settings
from adapter.dbutil import make_engine
from adapter.sources.models import CaseRow, DecisionRow
from adapter.store.models import Exchange, Recipient, StatusReport
from tests.conftest import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _cli(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adapter", "--config", str(cfg), *args],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def demo_config(tmp_path) -> Path:
    """The shipped configuration in a directory of its own, on ports no one else holds."""
    (tmp_path / "config").mkdir()
    text = (ROOT / "config" / "adapter.toml").read_text(encoding="utf-8")
    assert text.count("8741") >= 3 and "9741" in text  # the demo's ports, rewritten below
    text = text.replace("8741", str(free_port())).replace("127.0.0.1:9741", "") \
        .replace('"schemas/', f'"{ROOT}/schemas/')
    cfg = tmp_path / "config" / "adapter.toml"
    cfg.write_text(text, encoding="utf-8")
    return cfg


def test_each_decision_goes_to_the_court_and_the_procuracy_and_both_answer(demo_config):
    init = _cli(demo_config, "init", "--demo", "--cases", "60")
    assert init.returncode == 0, init.stderr
    run = _cli(demo_config, "run", "--until-idle")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "route decisions-to-axis: prepared 6, rejected 0, delivered 6" in run.stdout
    assert ("simulated axis carried 6 documents to 12 recipients (12 taken), "
            "and 24 status packets back") in run.stdout

    s = load_settings(demo_config)
    with make_engine(s.url(s.source.url)).connect() as c:
        expected = {d: {court, procuracy} for d, court, procuracy in c.execute(
            select(DecisionRow.decision_code, CaseRow.court_org_id, CaseRow.procuracy_org_id)
            .join(CaseRow, CaseRow.id == DecisionRow.case_id))}
    assert len(expected) == 6
    assert all(len(v) == 2 and all(o.endswith((".T01", ".V01")) for o in v)
               for v in expected.values())

    with make_engine(s.url(s.adapter.state_db)).connect() as c:
        rows = c.execute(select(Exchange.source_key, Exchange.state)
                         .where(Exchange.kind == "edoc", Exchange.direction == "out")).all()
        assert sorted(r.source_key for r in rows) == sorted(expected)
        assert {r.state for r in rows} == {"delivered"}
        seen: dict[str, set[str]] = defaultdict(set)
        for key, org, settled in c.execute(
                select(Exchange.source_key, Recipient.organ_id,
                       Recipient.settled)
                .join(Exchange, Exchange.id == Recipient.exchange_id)
                .where(Exchange.kind == "edoc")):
            assert settled == "03", (key, org, settled)
            seen[key].add(org)
        timelines: dict[tuple[str, str], list[str]] = defaultdict(list)
        for key, org, code in c.execute(
                select(Exchange.source_key, StatusReport.organ_id, StatusReport.code)
                .join(Exchange, Exchange.id == StatusReport.exchange_id)
                .order_by(StatusReport.id)):
            timelines[key, org].append(code)
    assert dict(seen) == expected
    assert all(t == ["01", "03"] for t in timelines.values()), timelines
    assert len(timelines) == 12
