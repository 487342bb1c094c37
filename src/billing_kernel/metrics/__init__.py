"""Metrics: the catalogue of what is counted (tokens, runs, seats, and any a deployment adds),
and how each is aggregated over a period. Meters with properties belong here."""
