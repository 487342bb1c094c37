"""The HTTP API: `create_app()` builds it; routes are thin layers over BillingService."""
