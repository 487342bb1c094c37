"""billing-kernel: plans, per-org monthly usage and quota decisions for multi-tenant SaaS."""

__version__ = "0.1.0"
