"""A reservation's lifecycle: what a commit or a release does in each state, and when a hold
counts as expired. Pure, with the clock passed in."""

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from billing_kernel.errors import IdempotencyConflict, InvalidInput, ReservationSettled
from billing_kernel.reservations.rules import (
    DEFAULT_TTL_SECONDS,
    ID_PATTERN_TEXT,
    MAX_TTL_SECONDS,
    Reservation,
    ReservationStatus,
    Settlement,
    commit_of,
    new_reservation_id,
    release_of,
    validate_ttl,
)

NOW = datetime(2026, 11, 30, 23, 55, tzinfo=UTC)
HELD = Reservation(
    reservation_id="rsv_" + "0" * 32,
    org_id="acme",
    idempotency_key="llm-call-1",
    metric="tokens",
    estimate=4_000,
    status=ReservationStatus.HELD,
    reserved_at=NOW,
    expires_at=NOW + timedelta(minutes=15),
)


def in_state(status: ReservationStatus, committed: int | None = None) -> Reservation:
    return replace(HELD, status=status, committed_quantity=committed)


def test_a_hold_sits_in_the_period_it_was_made_in_until_its_ttl_ends() -> None:
    assert HELD.period_start == date(2026, 11, 1)  # though it expires in December
    assert HELD.holding == 4_000
    assert HELD.status_at(NOW + timedelta(minutes=14, seconds=59)) is ReservationStatus.HELD
    assert HELD.status_at(HELD.expires_at) is ReservationStatus.EXPIRED
    for status in (ReservationStatus.COMMITTED, ReservationStatus.RELEASED):
        assert in_state(status).status_at(HELD.expires_at) is status
        assert in_state(status).holding == 0


@pytest.mark.parametrize("actual", [0, 1_234, 4_000, 9_999])
def test_a_commit_records_the_actual_usage_and_gives_back_the_hold(actual: int) -> None:
    assert commit_of(HELD, actual) == Settlement(ReservationStatus.COMMITTED, 4_000, actual)


def test_a_commit_after_the_hold_expired_still_records_the_usage() -> None:
    # not yet given back: the commit gives it back
    past_ttl = HELD  # the TTL ended, no decision has given it back yet
    assert commit_of(past_ttl, 10) == Settlement(ReservationStatus.COMMITTED, 4_000, 10)
    # already given back: nothing more to give back, the usage is recorded all the same
    expired = in_state(ReservationStatus.EXPIRED)
    assert commit_of(expired, 10) == Settlement(ReservationStatus.COMMITTED, 0, 10)


def test_a_commit_retried_changes_nothing_and_another_amount_conflicts() -> None:
    committed = in_state(ReservationStatus.COMMITTED, committed=3_000)
    assert commit_of(committed, 3_000) == Settlement(
        ReservationStatus.COMMITTED, 0, None, changes=False
    )
    with pytest.raises(IdempotencyConflict, match="already committed with 3000") as caught:
        commit_of(committed, 3_001)
    assert caught.value.details == {"reservation_id": HELD.reservation_id}


@pytest.mark.parametrize("status", [ReservationStatus.RELEASED, ReservationStatus.REFUSED])
def test_what_holds_nothing_cannot_be_committed(status: ReservationStatus) -> None:
    with pytest.raises(
        ReservationSettled,
        match=f"was {status.value} and holds nothing to commit; report the usage as a usage "
        "event instead$",
    ) as caught:
        commit_of(in_state(status), 1)
    assert caught.value.details == {"reservation_id": HELD.reservation_id, "status": status.value}


def test_a_release_gives_back_the_hold_once() -> None:
    assert release_of(HELD) == Settlement(ReservationStatus.RELEASED, 4_000, None)
    for status in (
        ReservationStatus.RELEASED,
        ReservationStatus.EXPIRED,
        ReservationStatus.REFUSED,
    ):
        assert release_of(in_state(status)) == Settlement(status, 0, None, changes=False)
    with pytest.raises(ReservationSettled, match="was committed: its usage is recorded") as caught:
        release_of(in_state(ReservationStatus.COMMITTED, committed=5))
    assert caught.value.details == {"reservation_id": HELD.reservation_id, "status": "committed"}


@pytest.mark.parametrize("seconds", [1, DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS])
def test_a_ttl_in_range_is_taken(seconds: int) -> None:
    assert validate_ttl(seconds) == timedelta(seconds=seconds)


@pytest.mark.parametrize("seconds", [0, -1, MAX_TTL_SECONDS + 1, 1.5, "60", True, None])
def test_a_ttl_out_of_range_is_refused_by_name(seconds: object) -> None:
    with pytest.raises(
        InvalidInput, match="ttl_seconds must be a whole number from 1 to 86,400"
    ) as caught:
        validate_ttl(seconds)
    assert caught.value.details == {"field": "ttl_seconds"}


def test_reservation_ids_are_unguessable_and_match_their_pattern() -> None:
    made = {new_reservation_id() for _ in range(100)}
    assert len(made) == 100
    assert all(re.fullmatch(ID_PATTERN_TEXT, made_id) for made_id in made)
