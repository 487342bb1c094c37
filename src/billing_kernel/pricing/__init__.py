"""Pricing: what usage beyond what a plan includes costs, by its price model (per unit,
graduated or volume tiers, packages), each cost with the formula its invoice line shows."""
