"""Payments: collecting finalized invoices through Stripe, exactly once."""
