"""The delivery rule for documents with several recipients, on the store alone."""

from adapter.store import AttemptOutcome, NewExchange, RetryPolicy, State, utcnow
from adapter.store.recipients import ReportedStatus

DOC = "000.00.00.G15,2026/01/02,1/QĐ-THADS"
ORGS = ("000.00.01.H01", "000.00.02.H02", "000.00.03.H03")


def _sent_document(store) -> int:
    store.add_exchanges("docs", [NewExchange("00000000-0000-0000-0000-000000000001", "edoc",
                                             "QD-1", 1, None, payload=b"<edXML/>",
                                             document_id=DOC, recipients=ORGS)], None)
    claimed = {c.id: c for c in store.claim("docs", limit=1, lease_seconds=60)}
    (ex_id,) = claimed
    store.record_outcomes([AttemptOutcome(ex_id, utcnow(), 1, "sent", receipt_status="queued",
                                          platform_message_id="D1")], claimed, RetryPolicy())
    return ex_id


def _report(store, org: str, code: str):
    return store.record_status(ReportedStatus(DOC, org, code, f"code {code}",
                                              "2026/01/02 10:00:00"))


def test_arrival_settles_nothing_and_the_last_answer_delivers(state_store):
    ex_id = _sent_document(state_store)
    for org in ORGS:
        assert _report(state_store, org, "01").delivered is False
    assert _report(state_store, ORGS[0], "03").delivered is False
    assert _report(state_store, ORGS[1], "05").delivered is False  # progress implies 03
    assert _report(state_store, ORGS[2], "02").delivered is True
    e = state_store.get(str(ex_id))
    assert e.state == State.DELIVERED and f"{ORGS[2]} rejected it" in e.last_error
    timeline = {r.organ_id: (r.settled, [s.code for s in r.statuses])
                for r in state_store.recipients_of(ex_id)}
    assert timeline == {ORGS[0]: ("03", ["01", "03"]), ORGS[1]: ("05", ["01", "05"]),
                        ORGS[2]: ("02", ["01", "02"])}


def test_a_later_report_does_not_undo_a_refusal_and_unknown_documents_are_none(state_store):
    ex_id = _sent_document(state_store)
    _report(state_store, ORGS[0], "02")
    _report(state_store, ORGS[0], "05")
    (first, *_) = state_store.recipients_of(ex_id)
    assert first.settled == "02"
    assert state_store.record_status(ReportedStatus("elsewhere", ORGS[0], "01", None,
                                                    None)) is None
    # only an addressee reports for itself
    assert _report(state_store, "000.00.09.H09", "03") is None
    assert "000.00.09.H09" not in {r.organ_id for r in state_store.recipients_of(ex_id)}


def test_answers_that_arrive_before_our_send_is_recorded_deliver_it_when_it_is(state_store):
    """A recipient may answer before our own send is recorded (the demo's simulated courts
    answer during the send call; a crash between send and record does the same): the
    answers settle the recipients, and recording the send then delivers the document
    instead of leaving it in SENT for ever."""
    state_store.add_exchanges("docs", [NewExchange("00000000-0000-0000-0000-000000000001",
                                                   "edoc", "QD-1", 1, None,
                                                   payload=b"<edXML/>", document_id=DOC,
                                                   recipients=ORGS)], None)
    claimed = {c.id: c for c in state_store.claim("docs", limit=1, lease_seconds=60)}
    (ex_id,) = claimed
    for org in ORGS:  # every answer while the exchange is still SENDING
        assert _report(state_store, org, "03").delivered is False
    assert state_store.get(str(ex_id)).state == State.SENDING
    state_store.record_outcomes([AttemptOutcome(ex_id, utcnow(), 1, "sent",
                                                receipt_status="queued",
                                                platform_message_id="D1")],
                                claimed, RetryPolicy())
    assert state_store.get(str(ex_id)).state == State.DELIVERED


def test_a_send_recorded_with_a_recipient_still_silent_stays_sent(state_store):
    state_store.add_exchanges("docs", [NewExchange("00000000-0000-0000-0000-000000000002",
                                                   "edoc", "QD-2", 1, None,
                                                   payload=b"<edXML/>", document_id=DOC,
                                                   recipients=ORGS)], None)
    claimed = {c.id: c for c in state_store.claim("docs", limit=1, lease_seconds=60)}
    (ex_id,) = claimed
    for org in ORGS[:2]:
        _report(state_store, org, "03")
    state_store.record_outcomes([AttemptOutcome(ex_id, utcnow(), 1, "sent")], claimed,
                                RetryPolicy())
    assert state_store.get(str(ex_id)).state == State.SENT
    assert _report(state_store, ORGS[2], "03").delivered is True
