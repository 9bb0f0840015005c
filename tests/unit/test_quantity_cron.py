"""Resource quantities and cron schedules."""

from __future__ import annotations

from datetime import datetime

import pytest

from agents.machinery import cron, quantity


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("1000m", "1"),
        ("1500m", "1500m"),
        ("0.5", "500m"),
        (1, "1"),
        (0.25, "250m"),
        ("1024Mi", "1Gi"),
        ("1536Mi", "1536Mi"),
        ("2048", "2048"),
        ("2000", "2k"),
        ("1e3", "1e3"),
        ("100Ki", "100Ki"),
        ("512", "512"),
        ("0", "0"),
        ("1.5Gi", "1536Mi"),
        ("12345", "12345"),
        ("2E", "2E"),  # exa, not an exponent
    ],
)
def test_quantities_take_their_canonical_form(text: str | int | float, canonical: str) -> None:
    assert quantity.canonical(text) == canonical


def test_quantities_compare_exactly() -> None:
    assert quantity.milli("250m") == 250 and quantity.milli("1.5") == 1500 and quantity.milli("1n") == 1
    assert quantity.whole("1Gi") == 1024**3 and quantity.whole("1.5k") == 1500
    assert quantity.value("1Gi") > quantity.value("1G")


@pytest.mark.parametrize("text", ["", "1.2.3", "abc", "1Zi", "--1", "1 Gi"])
def test_malformed_quantities_are_refused(text: str) -> None:
    with pytest.raises(quantity.QuantityError):
        quantity.parse(text)


@pytest.mark.parametrize("text", ["1e99999999", "1e-2000", "9" * 5000])
def test_quantities_too_large_to_compute_are_refused_at_once(text: str) -> None:
    with pytest.raises(quantity.QuantityError):
        quantity.canonical(text)


def test_cron_next_run_times() -> None:
    start = datetime(2026, 1, 1, 10, 7)
    assert cron.parse("*/15 * * * *").next_after(start) == datetime(2026, 1, 1, 10, 15)
    assert cron.parse("0 3 * * *").next_after(start) == datetime(2026, 1, 2, 3, 0)
    assert cron.parse("@hourly").next_after(start) == datetime(2026, 1, 1, 11, 0)
    assert cron.parse("30 9 * * MON-FRI").next_after(datetime(2026, 1, 3, 12, 0)) == datetime(2026, 1, 5, 9, 30)
    assert cron.parse("0 0 1 JAN *").next_after(start) == datetime(2027, 1, 1, 0, 0)
    assert cron.parse("0 0 * * 7").matches(datetime(2026, 1, 4, 0, 0))  # 7 is Sunday too


@pytest.mark.parametrize(
    "text", ["* * * *", "61 * * * *", "*/0 * * * *", "TZ=UTC * * * * *", "@sometimes", "5-1 * * * *"]
)
def test_malformed_schedules_are_refused(text: str) -> None:
    with pytest.raises(cron.CronError):
        cron.parse(text)
