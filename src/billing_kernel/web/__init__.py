"""What every HTTP edge shares: the request dependencies (`deps`), error rendering as
problem details (`problems`), common body types (`schemas`), responses (`responses`)."""
