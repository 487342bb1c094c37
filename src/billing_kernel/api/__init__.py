"""The HTTP API: `create_app()` mounts every capability's routes, the billing page and the
health checks."""
