"""The billing page at /app/billing: server-rendered, no JavaScript, no build step."""
