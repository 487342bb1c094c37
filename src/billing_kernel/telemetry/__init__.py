"""What the kernel tells its operators: Prometheus metrics (`instruments.py`, served at
`/metrics` by `routes.py`), one log line per request (`logs.py`), and the request middleware
that measures and logs every answer (`middleware.py`)."""
