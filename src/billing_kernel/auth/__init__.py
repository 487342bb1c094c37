"""Who is calling: users with JWTs (`tokens`), backends with API keys (`service`,
`repository`), and what each may do (`rules`)."""
