"""Reservations: units held against a limit for work whose size is known only afterwards
(an LLM call), then committed as the usage it turned out to be, released, or given back
when they expire. Whether a reservation may be made is a quota decision (`quota`); the
held units sit on the usage counter (`usage`); their lifecycle is here."""
