"""How far behind a replica is, from the primary's log positions noted over time."""

from billing_kernel.db.replica import ReplicaLag


def test_a_replica_at_the_primarys_latest_position_is_not_behind() -> None:
    lag = ReplicaLag(window=10)
    lag.noted(100.0, 5_000)
    assert lag.behind(100.5, 5_000) == 0.5  # as of the probe: no more than since it
    lag.noted(101.0, 5_000)  # an idle primary: the position stays
    assert lag.behind(101.0, 5_000) == 0.0


def test_a_replica_is_behind_by_the_time_since_the_latest_position_it_reached() -> None:
    lag = ReplicaLag(window=10)
    for second, position in ((100.0, 1_000), (101.0, 2_000), (102.0, 3_000)):
        lag.noted(second, position)
    assert lag.behind(102.5, 2_999) == 1.5  # reached 101's position, not 102's
    assert lag.behind(102.5, 2_000) == 1.5
    assert lag.behind(102.5, 1_999) == 2.5
    assert lag.behind(102.5, 999) is None  # behind every position noted


def test_positions_older_than_the_window_are_forgotten() -> None:
    lag = ReplicaLag(window=2)
    lag.noted(100.0, 1_000)
    lag.noted(101.0, 2_000)
    lag.noted(102.0, 3_000)
    assert [at for at, _ in lag.samples] == [100.0, 101.0, 102.0]
    lag.noted(102.5, 3_000)
    assert [at for at, _ in lag.samples] == [101.0, 102.0, 102.5]
    assert lag.behind(103.0, 1_500) is None  # what it reached fell out of the window
