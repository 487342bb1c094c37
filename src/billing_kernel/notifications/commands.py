"""The delivery commands: `billing-kernel worker`, and `billing-kernel webhooks ...` for
endpoints and the delivery log."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from typing import Annotated

import typer

from billing_kernel.background import background_tasks
from billing_kernel.commands import echo_each, fail, with_kernel
from billing_kernel.db import migrate as migrations
from billing_kernel.events.rules import EventType
from billing_kernel.kernel import Kernel
from billing_kernel.notifications.listener import listen
from billing_kernel.notifications.rules import Attempt, DeliveryStatus
from billing_kernel.telemetry.instruments import serve_metrics
from billing_kernel.telemetry.logs import configure as configure_logs

webhooks_app = typer.Typer(help="Webhook endpoints and the delivery log.", no_args_is_help=True)


def worker(
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve this worker's metrics (heartbeats, deliveries, close failures) for "
            "Prometheus at http://HOST:PORT/metrics, unauthenticated.",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Where --metrics-port listens: keep it off public networks.")
    ] = "127.0.0.1",
) -> None:
    """Deliver events (webhooks, email, Slack), close the billing periods that are due,
    with a Stripe key collect invoices, and forget what is past its retention, until stopped
    (Ctrl-C or SIGTERM). On PostgreSQL, run as many as you like side by side."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")

    async def run(kernel: Kernel) -> None:
        configure_logs(kernel.settings.log_format, log_level)  # BILLING_LOG_FORMAT=json
        tasks = background_tasks(kernel)
        loop = asyncio.get_running_loop()

        def stop() -> None:
            for task in tasks:
                task.stop()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        doing = ["delivering events"]
        if kernel.settings.close_periods:
            doing.append("closing billing periods")
        if kernel.payments.enabled:
            doing.append("collecting invoices through Stripe")
        where = migrations.display_url(kernel.settings.database_url)
        typer.echo(
            f"{', '.join(doing[:-1])}{' and ' if len(doing) > 1 else ''}{doing[-1]} from {where}"
        )
        stop_metrics = None
        if metrics_port is not None:
            try:
                stop_metrics = serve_metrics(metrics_host, metrics_port)
            except OSError as exc:
                fail(f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc.strerror}")
        try:
            await asyncio.gather(*(task.run() for task in tasks))
        finally:
            if stop_metrics is not None:
                stop_metrics()

    with_kernel(run)


@webhooks_app.command("add")
def webhooks_add(
    url: str,
    org: Annotated[str | None, typer.Option(help="Only this org's events (default: all).")] = None,
    event: Annotated[
        list[EventType] | None, typer.Option(help="An event type it wants (repeat; default: all).")
    ] = None,
    description: Annotated[str | None, typer.Option(help="What it is for.")] = None,
) -> None:
    """Register a webhook endpoint; prints its id and signing secret (shown only now)."""
    endpoint = with_kernel(
        lambda kernel: kernel.notifications.add_endpoint(
            url, event_types=[str(e) for e in event or []], org_id=org, description=description
        )
    )
    typer.echo(f"{endpoint.endpoint_id}  {endpoint.url}")
    typer.echo(f"secret: {endpoint.secret}")


@webhooks_app.command("list")
def webhooks_list(org: Annotated[str | None, typer.Option(help="Only this org's.")] = None) -> None:
    """The endpoints, without their secrets."""
    found = with_kernel(lambda kernel: kernel.notifications.endpoints(org_id=org, limit=1000))
    echo_each(
        f"{e.endpoint_id}  {e.url}  {e.org_id or 'every org'}  "
        f"{','.join(e.event_types) or 'all events'}"
        for e in found
    )


@webhooks_app.command("remove")
def webhooks_remove(endpoint_id: str) -> None:
    """Stop sending to an endpoint."""
    with_kernel(lambda kernel: kernel.notifications.remove_endpoint(endpoint_id))
    typer.echo(f"removed {endpoint_id}")


@webhooks_app.command("rotate-secret")
def webhooks_rotate(endpoint_id: str) -> None:
    """A new signing secret; the old one signs too until the overlap ends."""
    endpoint = with_kernel(lambda kernel: kernel.notifications.rotate_secret(endpoint_id))
    typer.echo(f"secret: {endpoint.secret}")
    typer.echo(f"the previous secret also signs until {endpoint.previous_until:%Y-%m-%d %H:%M} UTC")


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    status: Annotated[DeliveryStatus | None, typer.Option(help="Only in this status.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Only this endpoint's.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
) -> None:
    """The latest deliveries, newest first, with their last attempt."""
    found = with_kernel(
        lambda kernel: kernel.notifications.deliveries(
            org_id=None, endpoint_id=endpoint, status=status, limit=limit
        )
    )
    echo_each(
        f"{delivery.delivery_id}  {delivery.event_id}  {delivery.channel.value}:"
        f"{delivery.target}  {delivery.status.value}  {len(attempts)} attempt(s)"
        f"{_last_answer(attempts)}"
        for delivery, attempts in found
    )


def _last_answer(attempts: Sequence[Attempt]) -> str:
    """What the last attempt got back ('' before the first)."""
    if not attempts:
        return ""
    last = attempts[-1]
    return f"  {last.status_code or '-'} {last.error or ''}".rstrip()


@webhooks_app.command("replay")
def webhooks_replay(delivery_id: str) -> None:
    """Send a delivery again (same webhook-id), from the start of the retry schedule."""
    delivery, _ = with_kernel(lambda kernel: kernel.notifications.replay(delivery_id))
    typer.echo(f"{delivery.delivery_id}: {delivery.status.value}")


@webhooks_app.command("listen")
def webhooks_listen(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1.")] = 9000,
    secret: Annotated[
        str | None, typer.Option(help="The endpoint's whsec_ secret: verify each signature.")
    ] = None,
) -> None:
    """A webhook receiver for trying things out: prints each event it gets (and whether its
    signature verifies), answers 204."""
    listen(port, secret, typer.echo)
