"""Usage alerts: thresholds per plan and org, each crossing decided in the transaction of
the write that made it (every usage writer reports the counters it moved here), and the
events that say so, kept in `billing_events` for every channel to deliver."""
