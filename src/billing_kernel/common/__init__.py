"""Pure rules every capability uses: `periods` (calendar months in UTC), `money` (Decimal,
rounded once), `validation` (what an id, text, quantity or event time may be).

Nothing here does I/O; it imports only the standard library and `billing_kernel.errors`.
"""
