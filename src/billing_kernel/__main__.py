from billing_kernel.cli import app

app(prog_name="billing-kernel")
