"""Credit notes are refunded through the payments tests' Stripe: the same fixtures."""

from tests.payments.conftest import database, server, stripe_client

__all__ = ["database", "server", "stripe_client"]
