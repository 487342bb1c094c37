"""Credit balances: money an org holds with the deployment, drawn by its next invoices."""
