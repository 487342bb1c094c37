"""The pure billing domain: periods, plans, metrics, money, usage validation, quota decisions.

Nothing here does I/O; everything is a value computed from other values, so it is tested
without fixtures or a database. Imports: the standard library and `billing_kernel.errors`.
"""
