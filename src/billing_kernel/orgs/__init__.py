"""Orgs and their billing state: plan, status, trial, created on first touch. Subscription
lifecycle (plan changes, cancellation, past due) belongs here."""
