"""Who is calling: users with JWTs, services with API keys, and what each may do."""
