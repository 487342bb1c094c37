"""Settings that parse a value of their own."""

import pytest
from pydantic import ValidationError

from billing_kernel.config import Settings, parse_dunning_days


def test_the_dunning_schedule_is_increasing_whole_days() -> None:
    assert parse_dunning_days("1,3,5,7") == Settings().dunning_schedule() == (1, 3, 5, 7)
    assert parse_dunning_days(" 2 , 10 ") == (2, 10)
    assert parse_dunning_days("60") == (60,)
    assert parse_dunning_days("1") == (1,)
    assert parse_dunning_days("") == parse_dunning_days("  ") == ()
    for bad, said in [
        ("0", "dunning days are whole days from 1 to 60, not '0'"),
        ("61", "dunning days are whole days from 1 to 60, not '61'"),
        ("1,x", "dunning days are whole days from 1 to 60, not 'x'"),
        ("1,,3", "dunning days are whole days from 1 to 60, not ''"),
        ("-1", "dunning days are whole days from 1 to 60, not '-1'"),
        ("3,3", "dunning days must increase: 3 comes after 3"),
        ("5,2", "dunning days must increase: 2 comes after 5"),
    ]:
        with pytest.raises(ValueError, match="dunning days") as refused:
            parse_dunning_days(bad)
        assert str(refused.value) == said


def test_a_wrong_dunning_schedule_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValidationError, match="dunning_days") as refused:
        Settings(dunning_days="3,1")
    assert "dunning days must increase: 1 comes after 3" in str(refused.value)
    assert Settings(dunning_days="").dunning_schedule() == ()
