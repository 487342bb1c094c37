"""The SDK's public surface is deliberate: what `__all__` lists, nothing more, and none of the
server's modules behind it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import textwrap
import types

import billing_kernel_sdk
from billing_kernel_sdk import fields, transport


def test_all_lists_every_public_name_and_only_those() -> None:
    public = {
        name
        for name, value in vars(billing_kernel_sdk).items()
        if (not name.startswith("_") or name == "__version__")
        and not isinstance(value, types.ModuleType)
    }
    assert sorted(billing_kernel_sdk.__all__) == sorted(public)


def test_every_exported_name_resolves() -> None:
    for name in billing_kernel_sdk.__all__:
        assert getattr(billing_kernel_sdk, name) is not None


def test_the_sdk_imports_nothing_of_the_server() -> None:
    # A fresh interpreter: this test process has other test tools' modules loaded.
    probe = textwrap.dedent("""
        import importlib, pkgutil, sys
        import billing_kernel_sdk
        for module in pkgutil.iter_modules(billing_kernel_sdk.__path__):
            importlib.import_module(f"billing_kernel_sdk.{module.name}")
        print("\\n".join(sorted(sys.modules)))
    """)
    loaded = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout.split()
    assert "billing_kernel_sdk._tracker" in loaded
    server = ("billing_kernel.", "sqlalchemy", "fastapi", "starlette", "pydantic", "asyncpg")
    assert [name for name in loaded if name == "billing_kernel" or name.startswith(server)] == []


def test_only_fields_and_transport_are_public_modules() -> None:
    """Everything else is internal (`_delivery`, `_buffer`, ...), free to change: the package
    exports what callers use, `fields` and `transport` are public on purpose (the rules of
    an event's fields, which the kernel applies too; what a transport of one's own builds on)."""
    modules = {module.name for module in pkgutil.iter_modules(billing_kernel_sdk.__path__)}
    assert {name for name in modules if not name.startswith("_")} == {"fields", "transport"}
    for public in (fields, transport):
        assert public.__all__, public.__name__
        for name in public.__all__:
            assert getattr(public, name) is not None, f"{public.__name__}.{name}"
    assert transport.Request.__name__ in transport.__all__
