"""Deterministic synthetic enforcement data: realistic enough to exercise every rule.

Vietnamese names and addresses (NFC), 12-digit citizen ids opening with real province
codes, tax codes, courts, decision numbers like `1161/2025/QĐST-DS`, amounts, and receipts
whose words read their amounts, and the notices of the register of debtors without
conditions to pay (published, updated, withdrawn). The same seed gives the same database,
so tests and benchmarks are repeatable. Rows are inserted in chunks: memory stays flat up to
millions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Iterator

from sqlalchemy import Engine, insert, select

from adapter.mapping.vntext import amount_in_words
from adapter.sources.models import (
    CaseRow,
    DebtorEntryRow,
    DecisionRow,
    JudgmentRow,
    ObligationRow,
    PartyRow,
    ReceiptRow,
    SourceBase,
)

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi",
          "Đỗ", "Hồ", "Ngô", "Dương", "Lý"]
MIDDLE_M = ["Văn", "Hữu", "Đức", "Minh", "Quang", "Công", "Thành", "Xuân"]
MIDDLE_F = ["Thị", "Ngọc", "Thu", "Thanh", "Kim", "Mỹ", "Phương", "Hồng"]
GIVEN_M = ["An", "Bình", "Cường", "Dũng", "Hùng", "Long", "Nam", "Phong", "Quân", "Sơn",
           "Tuấn", "Việt", "Khánh", "Thắng", "Hiếu", "Đạt"]
GIVEN_F = ["Hà", "Hạnh", "Hương", "Lan", "Mai", "Phượng", "Thảo", "Trang", "Yến", "Ngân",
           "Linh", "Nhung", "Oanh", "Tuyết", "Diệp", "Ánh"]
STREETS = ["Lê Lợi", "Trần Hưng Đạo", "Nguyễn Trãi", "Hai Bà Trưng", "Lý Thường Kiệt",
           "Quang Trung", "Điện Biên Phủ", "Phạm Văn Đồng", "Võ Thị Sáu", "Hùng Vương"]
# (province, CCCD province code, office organisation id, court code)
PROVINCES = [
    ("Hà Nội", "001", "000.00.01.H26", "TAND-HNI"),
    ("Hải Phòng", "031", "000.00.31.H27", "TAND-HPG"),
    ("Thanh Hóa", "038", "000.00.38.H56", "TAND-THA"),
    ("Nghệ An", "040", "000.00.40.H40", "TAND-NAN"),
    ("Đà Nẵng", "048", "000.00.48.H17", "TAND-DNG"),
    ("Khánh Hòa", "056", "000.00.56.H34", "TAND-KHA"),
    ("Đắk Lắk", "066", "000.00.66.H15", "TAND-DLK"),
    ("TP. Hồ Chí Minh", "079", "000.00.79.H29", "TAND-HCM"),
    ("Cần Thơ", "092", "000.00.92.H13", "TAND-CTO"),
]
JUDGMENT_KINDS = [("DS-ST", "DS"), ("QĐST-DS", "DS"), ("HS-ST", "HS"), ("KDTM-PT", "KDTM"),
                  ("HNGĐ-ST", "HNGD"), ("LĐ-ST", "LD")]
OBLIGATIONS = ["AP", "TP", "BT", "TN", "TS"]
STATUSES = ["DTH", "DTH", "DTH", "CDK", "HOAN", "TDC", "DC", "XONG"]
RECEIPT_KINDS = ["TTHA", "PTHA", "AP", "LP", "TUAP"]

BASE_TIME = dt.datetime(2026, 1, 5, 8, 0, 0)


def _pdf(text: str) -> bytes:
    """A tiny but well-formed PDF, so attachment checks see real PDF bytes."""
    body = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1", "replace")
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            b"<< /Length %d >>\nstream\n" % len(body) + body + b"\nendstream"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def court_org_id(province: tuple) -> str:
    """The demo's QCVN 102 id of a province's court (T: courts, under the province's code)."""
    return f"000.00.{province[1][1:]}.T01"


def procuracy_org_id(province: tuple) -> str:
    """The demo's QCVN 102 id of a province's procuracy (Viện kiểm sát; V: procuracies)."""
    return f"000.00.{province[1][1:]}.V01"


class Generator:
    def __init__(self, seed: int = 2026) -> None:
        self.rng = random.Random(seed)

    def person(self, province: tuple) -> dict:
        r = self.rng
        female = r.random() < 0.45
        name = " ".join([r.choice(FAMILY), r.choice(MIDDLE_F if female else MIDDLE_M),
                         r.choice(GIVEN_F if female else GIVEN_M)])
        born = dt.date(r.randint(1950, 2004), r.randint(1, 12), r.randint(1, 28))
        century_sex = (0 if born.year < 2000 else 2) + (1 if female else 0)
        cid = f"{province[1]}{century_sex}{born.year % 100:02d}{r.randint(0, 999999):06d}"
        return dict(kind="CN", full_name=name, citizen_id=cid, tax_code=None, birth_date=born,
                    address=self.address(province))

    def organisation(self, province: tuple) -> dict:
        r = self.rng
        name = f"Công ty TNHH {r.choice(['Thương mại', 'Xây dựng', 'Dịch vụ', 'Vận tải'])} " \
               f"{r.choice(GIVEN_M)} {r.choice(GIVEN_F)}"
        tax = f"{r.randint(100000000, 999999999):010d}"
        if r.random() < 0.2:
            tax += f"-{r.randint(1, 20):03d}"
        return dict(kind="TC", full_name=name, citizen_id=None, tax_code=tax, birth_date=None,
                    address=self.address(province))

    def address(self, province: tuple) -> str:
        r = self.rng
        return (f"Số {r.randint(1, 299)} đường {r.choice(STREETS)}, phường {r.randint(1, 15)}, "
                f"{province[0]}")

    def case(self, i: int) -> tuple[dict, list[dict], list[dict], list[dict]]:
        r = self.rng
        prov = r.choice(PROVINCES)
        year = r.choice([2024, 2025, 2026])
        jkind, _ = r.choice(JUDGMENT_KINDS)
        jdate = dt.date(year - 1 if year > 2024 else year, r.randint(1, 12), r.randint(1, 28))
        accept = jdate + dt.timedelta(days=r.randint(20, 90))
        officer = f"{r.choice(FAMILY)} {r.choice(MIDDLE_M)} {r.choice(GIVEN_M)}"
        case = dict(
            id=i, case_code=f"THA-{prov[1]}-{i:08d}", acceptance_no=f"{r.randint(1, 9999)}/TLTHA",
            acceptance_date=accept, office_code=prov[2], kind=r.choice(["CD", "YC"]),
            decision_no=f"{r.randint(1, 9999)}/{accept.year}/QĐ-CCTHADS",
            decision_date=accept + dt.timedelta(days=r.randint(0, 5)),
            judgment_no=f"{r.randint(1, 9999)}/{jdate.year}/{jkind}", judgment_date=jdate,
            court_code=prov[3], court_name=f"Tòa án nhân dân {prov[0]}",
            court_org_id=court_org_id(prov), procuracy_org_id=procuracy_org_id(prov),
            officer=officer,
            status=r.choice(STATUSES), collected_amount=r.randint(0, 500) * 100_000,
            updated_at=BASE_TIME + dt.timedelta(seconds=i), version=1)
        parties = []
        debtor = self.person(prov) if r.random() < 0.8 else self.organisation(prov)
        parties.append(dict(debtor, case_id=i, role="PTHA"))
        parties.append(dict(self.person(prov), case_id=i, role="DTHA"))
        if r.random() < 0.2:
            parties.append(dict(self.person(prov), case_id=i, role="LQ"))
        obligations = []
        for _ in range(r.randint(1, 3)):
            t = r.choice(OBLIGATIONS)
            if t == "TS":
                obligations.append(dict(case_id=i, type=t, amount=None,
                                        asset_description="Quyền sử dụng đất thửa số "
                                        f"{r.randint(1, 999)}, tờ bản đồ số {r.randint(1, 60)}"))
            else:
                obligations.append(dict(case_id=i, type=t, amount=r.randint(1, 20000) * 10_000,
                                        asset_description=None))
        receipts = []
        for k in range(r.randint(0, 2)):
            amount = r.randint(1, 5000) * 1_000 + r.choice([0, 0, 0, 500])
            payer = parties[0]
            receipts.append(dict(
                id=i * 3 + k, receipt_code=f"BL-{i:08d}-{k}", form_code="C1-10/NS",
                series=f"AA/{accept.year % 100}P", number=f"{i * 3 + k:07d}",
                issued_at=dt.datetime.combine(accept, dt.time(r.randint(7, 16), r.randint(0, 59))),
                office_code=prov[2], payer_name=payer["full_name"], payer_address=payer["address"],
                payer_citizen_id=payer["citizen_id"], payer_tax_code=payer["tax_code"],
                amount=amount, amount_words=amount_in_words(amount) if r.random() < 0.7 else None,
                kind=r.choice(RECEIPT_KINDS), method=r.choice(["TM", "CK"]), case_id=i,
                court_case_code=f"{r.randint(1, 999)}/{jdate.year}/TLST-DS" if r.random() < 0.5
                else None,
                collector=f"{r.choice(FAMILY)} {r.choice(MIDDLE_F)} {r.choice(GIVEN_F)}",
                status="PH", status_reason=None, replaces_code=None,
                updated_at=BASE_TIME + dt.timedelta(seconds=i, milliseconds=100 + k), version=1))
        return case, parties, obligations, receipts

    def decision(self, i: int) -> dict:
        """An enforcement decision for case i (cases are generated first)."""
        r = self.rng
        n = r.randint(1, 9999)
        date = dt.date(2026, r.randint(1, 10), r.randint(1, 28))
        return dict(
            id=i, decision_code=f"QD-{i:08d}", case_id=i, code_number=str(n),
            code_notation="QĐ-CCTHADS", decision_date=date, place="Hà Nội",
            type_name="Quyết định", subject=f"Quyết định thi hành án số {n}/QĐ-CCTHADS",
            content="Quyết định thi hành án theo bản án đã có hiệu lực pháp luật",
            signer_competence="KT. CHI CỤC TRƯỞNG", signer_position="Phó Chi cục trưởng",
            signer_name=f"{r.choice(FAMILY)} {r.choice(MIDDLE_M)} {r.choice(GIVEN_M)}",
            document_name=f"quyet-dinh-{n}.pdf", document=_pdf(f"Quyet dinh {n}"),
            updated_at=BASE_TIME + dt.timedelta(seconds=i, milliseconds=500), version=1)

    def judgment(self, i: int) -> tuple[dict, list[dict], list[dict]]:
        r = self.rng
        prov = r.choice(PROVINCES)
        jkind, case_type = r.choice(JUDGMENT_KINDS)
        issued = dt.date(2026, r.randint(1, 10), r.randint(1, 28))
        number = f"{r.randint(1, 9999)}/{issued.year}/{jkind}"
        pdf = _pdf(f"Ban an so {i}")
        j = dict(id=i, judgment_code=f"BA-{prov[3][5:]}-{i:08d}", court_code=prov[3],
                 court_name=f"Tòa án nhân dân {prov[0]}", number=number, issued_date=issued,
                 effective_date=issued + dt.timedelta(days=30), case_type=case_type,
                 instance="ST" if "ST" in jkind else "PT",
                 summary="Buộc bị đơn thanh toán cho nguyên đơn số tiền nợ gốc và lãi",
                 document_name=f"ban-an-{i}.pdf", document_media_type="application/pdf",
                 document_sha256=hashlib.sha256(pdf).hexdigest(), document=pdf,
                 updated_at=BASE_TIME + dt.timedelta(seconds=i), version=1)
        parties = [dict(self.person(prov), judgment_id=i, role="PTHA"),
                   dict(self.person(prov), judgment_id=i, role="DTHA")]
        obligations = [dict(judgment_id=i, type="TN", amount=r.randint(1, 9000) * 100_000,
                            asset_description=None)]
        return j, parties, obligations


#: why an entry leaves the register (the reason of a withdrawal notice)
WITHDRAW_REASONS = [
    "Người phải thi hành án đã có điều kiện thi hành án",
    "Người phải thi hành án đã thi hành xong nghĩa vụ",
    "Đình chỉ thi hành án theo quyết định của Thủ trưởng cơ quan thi hành án",
]
#: what the verification minutes say: the office's own record, never sent
VERIFICATION_NOTES = [
    "Không có tài sản, không có thu nhập ổn định; sống nhờ nhà người thân",
    "Thu nhập chỉ đủ bảo đảm mức sinh hoạt tối thiểu; tài sản có giá trị nhỏ",
    "Tài sản phải trả theo bản án không còn; không có tài sản khác",
]


def debtor_notices(rng: random.Random, case: dict, parties: list[dict],
                   obligations: list[dict]) -> list[dict]:
    """The register notices of one case whose debtor has no conditions to pay: a publish,
    then perhaps updates (verification repeated) and perhaps a withdrawal, each a row of
    its own (version 1, 2, ...). None when nothing is left unpaid. `rng` is the caller's own,
    so adding notices never changes the cases, receipts or judgments a seed makes."""
    money = [o for o in obligations if o["amount"]]
    unpaid = sum(o["amount"] for o in money) - (case["collected_amount"] or 0)
    if not money or unpaid <= 0:
        return []
    debtor = next(p for p in parties if p["role"] == "PTHA")
    person = debtor["kind"] == "CN"
    finding_date = case["decision_date"] + dt.timedelta(days=rng.randint(45, 240))
    verified = finding_date - dt.timedelta(days=rng.randint(1, 10))
    # money unpaid: no income or assets (art. 44a(1)(a)); an asset to hand over that is gone
    # as well: sometimes (b)
    assets = any(o["type"] == "TS" for o in obligations)
    ground = "B" if assets and rng.random() < 0.4 else "A"
    base = dict(
        entry_code=f"CDK-{case['case_code'][4:]}", action="CB", action_reason=None,
        case_id=case["id"], office_code=case["office_code"],
        person_name=debtor["full_name"] if person else None,
        citizen_id=debtor["citizen_id"] if person else None,
        birth_date=debtor["birth_date"] if person else None,
        organisation_name=None if person else debtor["full_name"],
        tax_code=None if person else debtor["tax_code"], address=debtor["address"],
        phone=f"09{rng.randint(0, 99_999_999):08d}",
        judgment_no=case["judgment_no"], judgment_date=case["judgment_date"],
        court_name=case["court_name"], obligation_type=max(money, key=lambda o: o["amount"])
        ["type"], amount=unpaid, amount_words=amount_in_words(unpaid) if rng.random() < 0.7
        else None,
        finding_no=f"{rng.randint(1, 9999)}/{finding_date.year}/QĐ-CCTHADS",
        finding_date=finding_date, ground=ground,
        verified_on=verified, next_verification_on=verified + dt.timedelta(days=180),
        verification_note=rng.choice(VERIFICATION_NOTES))
    fate = rng.random()
    updates = 0 if fate < 0.55 else rng.randint(1, 2) if fate < 0.8 else rng.randint(0, 1)
    notices = [base]
    for _ in range(updates):
        prev = notices[-1]
        on = prev["verified_on"] + dt.timedelta(days=rng.randint(170, 185))
        notices.append(dict(prev, action="CN", verified_on=on,
                            next_verification_on=on + dt.timedelta(days=365),
                            action_reason=f"Xác minh lại ngày {on:%d/%m/%Y}: người phải thi "
                                          "hành án vẫn chưa có điều kiện thi hành án",
                            verification_note=rng.choice(VERIFICATION_NOTES)))
    if fate >= 0.8:
        notices.append(dict(notices[-1], action="RUT", next_verification_on=None,
                            action_reason=rng.choice(WITHDRAW_REASONS)))
    # a notice is written when its verification is (the withdrawal a month after the last),
    # always after the notice before it
    at = BASE_TIME + dt.timedelta(seconds=case["id"], milliseconds=700)
    out = []
    for v, n in enumerate(notices, 1):
        if v > 1:
            day = n["verified_on"] if n["action"] == "CN" else \
                n["verified_on"] + dt.timedelta(days=30)
            at = max(at + dt.timedelta(days=1), dt.datetime.combine(day, at.time()))
        out.append(dict(n, version=v, updated_at=at))
    return out


def sample_notices(seed: int = 7, *, person: bool = True, start: int = 1) -> list[dict]:
    """The notices of the first register entry from case `start` on whose debtor is a person
    (or an organisation), whatever the case's status, with the case code the registry looks
    up: records for tests and the partner kit."""
    gen, rng = Generator(seed), random.Random(f"debtors-{seed}")
    i = start
    while True:
        case, parties, obligations, _ = gen.case(i)
        debtor = next(p for p in parties if p["role"] == "PTHA")
        notices = debtor_notices(rng, case, parties, obligations) \
            if (debtor["kind"] == "CN") == person else []
        if notices:
            return [dict(n, case_code=case["case_code"]) for n in notices]
        i += 1


def _chunks(n: int, size: int) -> Iterator[range]:
    for start in range(1, n + 1, size):
        yield range(start, min(n, start + size - 1) + 1)


def generate(engine: Engine, cases: int = 1000, judgments: int | None = None, *,
             decisions: int | None = None, debtors: int | None = None, seed: int = 2026,
             chunk: int = 2000) -> dict[str, int]:
    """Create the schema and fill it; idempotent (an already filled database is kept).
    `debtors`: register entries (default a tenth of the cases), made from the cases whose
    status is "no conditions to pay" (CDK); `debtor_notices` counts their rows."""
    SourceBase.metadata.create_all(engine)
    with engine.connect() as c:
        if c.execute(select(CaseRow.id).limit(1)).first() is not None:
            return {"cases": 0, "receipts": 0, "judgments": 0, "decisions": 0, "debtors": 0,
                    "debtor_notices": 0}
    gen = Generator(seed)
    debtor_rng = random.Random(f"debtors-{seed}")
    n_debtors = max(1, cases // 10) if debtors is None else debtors
    totals = {"cases": 0, "receipts": 0, "judgments": 0, "debtors": 0, "debtor_notices": 0}
    for ids in _chunks(cases, chunk):
        rows_c, rows_p, rows_o, rows_r, rows_d = [], [], [], [], []
        for i in ids:
            c_, p_, o_, r_ = gen.case(i)
            rows_c.append(c_)
            rows_p += p_
            rows_o += o_
            rows_r += r_
            if c_["status"] == "CDK" and totals["debtors"] < n_debtors:
                notices = debtor_notices(debtor_rng, c_, p_, o_)
                totals["debtors"] += 1 if notices else 0
                rows_d += notices
        with engine.begin() as c:
            c.execute(insert(CaseRow), rows_c)
            c.execute(insert(PartyRow), [dict(p, judgment_id=None) for p in rows_p])
            c.execute(insert(ObligationRow), [dict(o, judgment_id=None) for o in rows_o])
            if rows_r:
                c.execute(insert(ReceiptRow), rows_r)
            if rows_d:
                c.execute(insert(DebtorEntryRow), rows_d)
        totals["cases"] += len(rows_c)
        totals["receipts"] += len(rows_r)
        totals["debtor_notices"] += len(rows_d)
    n_dec = max(1, cases // 10) if decisions is None else decisions
    for ids in _chunks(n_dec, chunk):
        with engine.begin() as c:
            c.execute(insert(DecisionRow), [gen.decision(i) for i in ids])
        totals["decisions"] = totals.get("decisions", 0) + len(ids)
    n_judg = judgments if judgments is not None else max(1, cases // 10)
    for ids in _chunks(n_judg, chunk):
        rows_j, rows_p, rows_o = [], [], []
        for i in ids:
            j_, p_, o_ = gen.judgment(i)
            rows_j.append(j_)
            rows_p += p_
            rows_o += o_
        with engine.begin() as c:
            c.execute(insert(JudgmentRow), rows_j)
            c.execute(insert(PartyRow), [dict(p, case_id=None) for p in rows_p])
            c.execute(insert(ObligationRow), [dict(o, case_id=None) for o in rows_o])
        totals["judgments"] += len(rows_j)
    return totals
