"""Discounts: coupons an operator defines and applies to orgs, taken off their invoices."""
