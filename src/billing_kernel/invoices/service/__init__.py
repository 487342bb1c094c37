"""Invoices' operations: the lifecycle (`lifecycle.py`: the upcoming invoice, closing, paying,
voiding), verification (`verification.py`), and how both compute an invoice from its records
(`drafting.py`). Used through `InvoiceService`."""

from billing_kernel.invoices.service.lifecycle import (
    CloseFailure,
    CloseReport,
    Explained,
    InvoiceService,
)

__all__ = ["CloseFailure", "CloseReport", "Explained", "InvoiceService"]
