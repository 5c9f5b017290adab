"""Receiving over the axis: one bad item fails alone, the round goes on."""

import pytest
from sqlalchemy import select

from adapter.dbutil import make_engine
from adapter.engine.axis_inbound import AxisInbound
from adapter.engine.context import Context
from adapter.engine.outbound import OutboundEngine
from adapter.sim.server import build_app
from adapter.sources.synth import generate
from adapter.store.models import Exchange
from tests.conftest import serve_wsgi
from tests.integration.test_recipients import AGREE, _answer, _config

pytestmark = pytest.mark.slow


@pytest.fixture
def sent(tmp_path, pki):
    """A document sent to six agencies over a running simulated axis."""
    s = _config(tmp_path, pki, f"sqlite:///{tmp_path}/state.db")
    served = serve_wsgi(build_app(s), settings=s, port=s.simulator.port)
    generate(make_engine(s.url(s.source.url)), cases=10)
    ctx = Context(s)
    ctx.store.create_schema()
    out = OutboundEngine(ctx)
    out.prepare(s.route("decisions-out"))
    out.deliver(s.route("decisions-out"))
    with ctx.state_engine.connect() as c:
        document_id = c.execute(select(Exchange.document_id)).scalar()
    yield s, ctx, document_id
    ctx.close()
    served.close()


def test_an_axis_answer_without_data_fails_that_item_only(sent, pki):
    s, ctx, document_id = sent
    for org in AGREE[:2]:
        _answer(s, pki, org, document_id, "01")
    inbound = AxisInbound(ctx)
    (first, _) = inbound.axis.received()
    call = inbound.axis._call

    def without_data(name, values, **kw):  # the axis answers getEdoc without `data`
        answer = call(name, values, **kw)
        if name == "getEdoc" and dict(values)["docId"] == first.doc_id:
            answer.pop("data")
        return answer

    inbound.axis._call = without_data
    stats = inbound.pull(s.route("axis-in"))
    assert (stats.received, stats.statuses, stats.rejected) == (2, 1, 1)
    with ctx.state_engine.connect() as c:
        rows = c.execute(select(Exchange.state, Exchange.last_error, Exchange.receipt_status)
                         .where(Exchange.direction == "in").order_by(Exchange.id)).all()
    (state, error, ack), (state2, _, ack2) = rows
    assert state == "failed" and ack == "ack:fail"
    assert first.doc_id in error and "unreadable answer to fetch" in error
    assert "getEdoc" in error and "data is not base64" in error
    assert (state2, ack2) == ("delivered", "ack:done")
    assert inbound.axis.received() == []  # both answered: the axis lists nothing again
