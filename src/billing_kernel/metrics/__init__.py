"""Metrics: the catalogue of what is counted (tokens, runs, seats, and any a deployment adds),
and, as meters, which named events each counts and how (sum, count, unique count)."""
