"""The delivery worker: `billing-kernel worker`, or a task inside `serve` when
BILLING_WORKER_IN_SERVER is set (`make run`).

Each round dispatches new events into deliveries, claims the due ones, sends each (webhook:
a signed POST; Slack: a Block Kit message to the org's incoming webhook; email: SMTP to the
org's owners and admins), and records the attempt. On PostgreSQL any number of workers can
run side by side: they claim with `FOR UPDATE SKIP LOCKED`; on SQLite the database takes one
writer at a time, and one worker is enough.
"""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
import ssl
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from urllib.parse import quote, unquote, urlsplit

import httpx

from billing_kernel import __version__
from billing_kernel.config import Settings
from billing_kernel.db.database import EVENTS_CHANNEL, Database
from billing_kernel.errors import UrlNotAllowed
from billing_kernel.events.rules import EventType
from billing_kernel.members.service import MemberService
from billing_kernel.metrics.service import MetricService
from billing_kernel.notifications.rules import (
    AlertWords,
    Channel,
    alert_words,
    email_html,
    email_text,
    payment_words,
    slack_message,
    webhook_headers,
)
from billing_kernel.notifications.service import Job, NotificationService, Outcome
from billing_kernel.orgs.service import OrgService
from billing_kernel.telemetry.instruments import DELIVERIES

logger = logging.getLogger(__name__)

MAX_CLAIM = 20
USER_AGENT = f"billing-kernel/{__version__}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DeliveryWorker:
    """Delivers the outbox until stopped."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        *,
        notifications: NotificationService,
        orgs: OrgService,
        metrics: MetricService,
        members: MemberService,
        clock: Callable[[], datetime] = _utc_now,
        before_round: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._settings = settings
        self._before_round = before_round
        self._database = database
        self._notifications = notifications
        self._orgs = orgs
        self._metrics = metrics
        self._members = members
        self._clock = clock
        self._client = httpx.AsyncClient(
            timeout=settings.delivery_timeout_seconds,
            follow_redirects=False,
            headers={"user-agent": USER_AGENT},
        )
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self.delivered = 0

    async def run(self) -> None:
        """Rounds until `stop()`. An idle worker waits BILLING_WORKER_POLL_SECONDS, or on
        PostgreSQL until a transaction that wrote events commits (LISTEN), whichever is
        first. A round that fails (the database away) is logged and retried after the wait."""
        try:
            async with self._database.listen(EVENTS_CHANNEL, self._wake.set):
                while not self._stopping.is_set():
                    self._wake.clear()
                    try:
                        busy = await self.run_once()
                    except Exception:
                        logger.exception("a delivery round failed; trying again")
                        busy = False
                    if not busy:
                        await self._idle()
        finally:
            await self._client.aclose()

    async def _idle(self) -> None:
        waits = [asyncio.ensure_future(e.wait()) for e in (self._stopping, self._wake)]
        try:
            await asyncio.wait(
                waits,
                timeout=self._settings.worker_poll_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiting in waits:
                waiting.cancel()

    def stop(self) -> None:
        self._stopping.set()

    async def run_once(self) -> bool:
        """One round; whether it found anything to do."""
        if self._before_round is not None:
            await self._before_round()
        notifications = self._notifications
        dispatched = await notifications.dispatch()
        jobs = await notifications.claim(MAX_CLAIM)
        if jobs:
            await asyncio.gather(*(self._attempt(job) for job in jobs))
        return bool(dispatched or jobs)

    async def _attempt(self, job: Job) -> None:
        started, clock = self._clock(), time.monotonic()
        try:
            outcome = await self._send(job, started)
        except Exception as exc:  # a sender's bug must not stop the others' deliveries
            logger.exception("delivery %s failed", job.claimed.delivery.delivery_id)
            outcome = Outcome(False, started, 0, error=f"internal error: {exc}")
        outcome = Outcome(
            outcome.ok,
            started,
            int((time.monotonic() - clock) * 1000),
            outcome.status_code,
            outcome.error,
            outcome.skipped,
            outcome.final,
        )
        status = await self._notifications.record(job, outcome)
        DELIVERIES.labels(status.value).inc()
        if outcome.ok:
            self.delivered += 1
        logger.info(
            "delivery %s (%s, attempt %d): %s",
            job.claimed.delivery.delivery_id,
            job.claimed.delivery.channel.value,
            job.attempt,
            status.value,
        )

    async def _send(self, job: Job, started: datetime) -> Outcome:
        channel = job.claimed.delivery.channel
        if channel is Channel.WEBHOOK:
            if job.endpoint is None:
                return Outcome(False, started, 0, error="the endpoint was removed", final=True)
            body = job.claimed.payload.encode()
            headers = webhook_headers(
                job.endpoint.secrets_at(started),
                job.claimed.event.event_id,
                int(time.time()),
                body,
            )
            return await self._post(job.endpoint.url, body, headers, started)
        if channel is Channel.SLACK:
            if job.slack_url is None:
                return Outcome(False, started, 0, error="the org has no Slack webhook", final=True)
            words = await self._words(job)
            body = json.dumps(slack_message(words)).encode()
            return await self._post(
                job.slack_url, body, {"content-type": "application/json"}, started
            )
        return await self._email(job, started)

    async def _post(
        self, url: str, body: bytes, headers: dict[str, str], started: datetime
    ) -> Outcome:
        """POST to the address the URL's host resolves to now, checked before it is used
        (see `outbound`), with the name as the Host header and for TLS; no redirects."""
        try:
            to = await self._notifications.destination(url, "url")
        except UrlNotAllowed as refused:  # a name that does not resolve may, later
            final = "address" in refused.details
            return Outcome(False, started, 0, error=refused.message[:500], final=final)
        pinned = httpx.URL(url).copy_with(host=to.address)
        try:
            answer = await self._client.post(
                pinned,
                content=body,
                headers={**headers, "host": httpx.URL(url).netloc.decode("ascii")},
                extensions={"sni_hostname": to.host},
            )
        except httpx.TimeoutException:
            return Outcome(False, started, 0, error="no answer in time")
        except httpx.HTTPError as exc:
            return Outcome(False, started, 0, error=f"{type(exc).__name__}: {exc}"[:500])
        if 200 <= answer.status_code < 300:
            return Outcome(True, started, 0, status_code=answer.status_code)
        return Outcome(
            False,
            started,
            0,
            status_code=answer.status_code,
            error=f"HTTP {answer.status_code}: {answer.text[:200]}",
        )

    async def _words(self, job: Job) -> AlertWords:
        event = job.claimed.event
        org_id = event.org_id
        org = await self._orgs.get(org_id)
        link = f"{self._settings.public_url.rstrip('/')}/app/billing?org={quote(org_id)}"
        if event.event_type in (EventType.PAYMENT_FAILED, EventType.PAYMENT_CARD_NEEDED):
            return payment_words(event, org.name or org_id, link)
        metrics = await self._metrics.by_key()
        key = str(event.data.get("metric"))
        metric = metrics.get(key)
        return alert_words(
            event,
            org.name or org_id,
            metric.name if metric else key,
            metric.unit if metric else "units",
            link,
        )

    async def _email(self, job: Job, started: datetime) -> Outcome:
        smtp = self._settings.smtp_url
        org_id = job.claimed.event.org_id
        if smtp is None:
            return Outcome(False, started, 0, error="email is not configured", final=True)
        recipients = await self._members.admin_emails(org_id)
        if not recipients:
            return Outcome(
                False, started, 0, error="no owner or admin has an email address", skipped=True
            )
        words = await self._words(job)
        message = EmailMessage()
        message["Subject"] = words.subject
        message["From"] = self._settings.email_from
        message["To"] = ", ".join(recipients)
        message["Message-ID"] = f"<{job.claimed.event.event_id}@billing-kernel>"
        message.set_content(email_text(words))
        message.add_alternative(email_html(words), subtype="html")
        try:
            await asyncio.to_thread(
                send_mail, smtp.get_secret_value(), message, self._settings.delivery_timeout_seconds
            )
        except (OSError, smtplib.SMTPException) as exc:
            return Outcome(False, started, 0, error=f"{type(exc).__name__}: {exc}"[:500])
        return Outcome(True, started, 0)


def send_mail(url: str, message: EmailMessage, timeout: float) -> None:
    """Send over SMTP at `url` (smtp://user:password@host:port, or smtps://)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    if parts.scheme == "smtps":
        server: smtplib.SMTP = smtplib.SMTP_SSL(
            host, parts.port or 465, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        server = smtplib.SMTP(host, parts.port or 25, timeout=timeout)
    with server:
        if parts.scheme != "smtps":
            server.ehlo()
            if server.has_extn("starttls"):
                server.starttls(context=ssl.create_default_context())
                server.ehlo()
        if parts.username:
            server.login(unquote(parts.username), unquote(parts.password or ""))
        server.send_message(message)
