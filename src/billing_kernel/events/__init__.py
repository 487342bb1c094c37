"""The event log: what happened, once each, in the order written, for every channel."""
