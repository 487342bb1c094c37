"""Credit balances' pure rules: what an invoice draws, and what grants and burns must say of
each other."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from billing_kernel.credits.rules import Burn, Grant, draw, ledger_disagreements

D = Decimal
AT = datetime(2026, 6, 1, tzinfo=UTC)


def grant(grant_id: str, amount: str, remaining: str | None = None, days: int = 0) -> Grant:
    left = D(amount if remaining is None else remaining)
    return Grant(
        grant_id,
        "acme",
        "USD",
        D(amount),
        left,
        "credit_note",
        f"cn_{grant_id}",
        AT + timedelta(days=days),
    )


def test_an_invoice_draws_oldest_first_no_more_than_it_comes_to() -> None:
    older, newer = grant("b", "30.00", days=0), grant("a", "19.00", days=1)
    assert draw([newer, older], D("49.00")) == [("b", D("30.00")), ("a", D("19.00"))]
    assert draw([newer, older], D("35.50")) == [("b", D("30.00")), ("a", D("5.50"))]
    assert draw([newer, older], D("12.00")) == [("b", D("12.00"))]
    assert draw([newer, older], D("80.00")) == [("b", D("30.00")), ("a", D("19.00"))]
    assert draw([grant("b", "30.00", "0.00"), newer], D("5")) == [("a", D("5"))]
    assert draw([older], D("0")) == []
    assert draw([older], D("-3")) == []
    assert draw([], D("10")) == []
    same_day = [grant("z", "1.00"), grant("y", "1.00")]
    assert draw(same_day, D("1.00")) == [("y", D("1.00"))]  # then by id


def burn(grant_id: str, amount: str, released: bool = False) -> Burn:
    return Burn(grant_id, "inv_1", "acme", D(amount), AT, AT if released else None)


def test_grants_agree_with_what_invoices_drew() -> None:
    assert ledger_disagreements([grant("a", "49.00", "9.00")], [burn("a", "40.00")]) == []
    two = [burn("a", "40.00"), burn("a", "9.00")]
    assert ledger_disagreements([grant("a", "49.00", "0.00")], two) == []  # all drawn
    released = [burn("a", "40.00", released=True)]
    assert ledger_disagreements([grant("a", "49.00")], released) == []
    assert ledger_disagreements([grant("a", "49.00", "9.00")], released) == [
        "grant a (acme) has 9.00 left; 49.00 less what invoices drew is 49.00"
    ]
    assert ledger_disagreements([grant("a", "49.00", "-1.00")], [burn("a", "50.00")]) == [
        "grant a (acme) has -1.00 left of 49.00"
    ]
    assert ledger_disagreements([grant("a", "49.00", "50.00")], [burn("a", "-1.00")]) == [
        "grant a (acme) has 50.00 left of 49.00"
    ]
    assert ledger_disagreements([], [burn("x", "1.00")]) == [
        "invoices drew on grant x, which does not exist"
    ]
