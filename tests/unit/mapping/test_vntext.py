import unicodedata

import pytest

from adapter.mapping.vntext import amount_in_words, legacy_encoding_reason, words_match_amount

WORDS = [
    (0, "Không đồng"),
    (5, "Năm đồng"),
    (10, "Mười đồng"),
    (15, "Mười lăm đồng"),
    (21, "Hai mươi mốt đồng"),
    (24, "Hai mươi tư đồng"),
    (25, "Hai mươi lăm đồng"),
    (105, "Một trăm linh năm đồng"),
    (110, "Một trăm mười đồng"),
    (1_200_000, "Một triệu hai trăm nghìn đồng"),
    (1_005_000, "Một triệu không trăm linh năm nghìn đồng"),
    (2_000_005, "Hai triệu không trăm linh năm đồng"),
    (1_000_000_000, "Một tỷ đồng"),
    (1_000_000_005, "Một tỷ không trăm linh năm đồng"),
    (5_000_000_000_000, "Năm nghìn tỷ đồng"),
    (1_234_567_891, "Một tỷ hai trăm ba mươi tư triệu năm trăm sáu mươi bảy nghìn tám trăm "
                    "chín mươi mốt đồng"),
]


@pytest.mark.parametrize(("n", "words"), WORDS)
def test_amount_in_words(n, words):
    assert amount_in_words(n) == words


@pytest.mark.parametrize(("words", "n"), [
    ("một triệu hai trăm ngàn đồng", 1_200_000),      # ngàn (southern) = nghìn
    ("Một trăm lẻ năm đồng", 105),                    # lẻ = linh
    ("Hai mươi bốn đồng", 24),                        # bốn in the units place
    ("Một triệu hai trăm nghìn đồng chẵn.", 1_200_000),
    (unicodedata.normalize("NFD", "Một triệu hai trăm nghìn đồng"), 1_200_000),
])
def test_regional_variants_are_accepted(words, n):
    assert words_match_amount(words, n)


@pytest.mark.parametrize(("words", "n"), [
    ("Một triệu đồng", 1_200_000),
    ("Hai mươi một đồng", 21),       # must be "mốt"
    ("Một triệu hai trăm nghìn", 1_200_000),  # no currency
    ("Bốn mươi đồng", 24),
])
def test_words_that_disagree_are_refused(words, n):
    assert not words_match_amount(words, n)


def test_negative_amount_is_refused():
    with pytest.raises(ValueError):
        amount_in_words(-1)


@pytest.mark.parametrize(("text", "encoding"), [
    ("NguyÔn V¨n Hïng", "TCVN3"),            # Nguyễn Văn Hùng in TCVN3 read as Latin-1
    ("Tßa ¸n nh©n d©n", "TCVN3"),
    ("Nguyeãn Vaên Huøng", "VNI"),            # the same name in VNI
    ("Ñaø Naüng", "VNI"),
])
def test_legacy_encodings_are_detected_and_named(text, encoding):
    reason = legacy_encoding_reason(text)
    assert reason is not None and encoding in reason


@pytest.mark.parametrize("text", ["Nguyễn Văn Hùng", "Đà Nẵng", "Hồ Chí Minh", "Số 12, phường 3",
                                  "ĐỖ THỊ ÁNH", "Công ty TNHH Thương mại", "1161/2025/QĐST-DS"])
def test_proper_unicode_vietnamese_is_not_flagged(text):
    assert legacy_encoding_reason(text) is None


def test_control_characters_are_flagged():
    assert "control character" in legacy_encoding_reason("Nguyễn\x07 Văn")
