"""Invoices: what an org owes for a billing period, line by line."""
