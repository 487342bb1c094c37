"""Webhook endpoints and the delivery log (`/api/v1/webhooks/...`), and an org's Slack and
email settings (`/api/v1/orgs/{org_id}/notifications`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from billing_kernel.auth.rules import ApiKeyCaller
from billing_kernel.notifications.rules import DeliveryStatus
from billing_kernel.notifications.schemas import (
    ChannelsIn,
    ChannelsOut,
    DeliveryOut,
    EndpointIn,
    EndpointOut,
    EndpointWithSecretOut,
)
from billing_kernel.web.deps import KernelDep, OrgAdmin, OrgAdminOfPath, OrgId
from billing_kernel.web.pagination import DEFAULT_LIMIT, Cursor, Limit, Page, page_of
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.routers import links_to, orgs_router
from billing_kernel.web.schemas import Slug

router = APIRouter(
    prefix="/api/v1/webhooks",
    tags=["webhooks"],
    responses=problem_responses(401, 403, 404, 422),
)
settings_router = orgs_router()

EndpointId = Annotated[str, Path(max_length=32, pattern=r"^we_[0-9a-f]{1,29}$")]
DeliveryId = Annotated[str, Path(max_length=32, pattern=r"^dlv_[0-9a-f]{1,28}$")]


@router.post(
    "/endpoints",
    operation_id="createWebhookEndpoint",
    summary="Register a webhook endpoint",
    status_code=201,
    responses=links_to(
        201,
        "endpoint_id",
        "id",
        "getWebhookEndpoint",
        "rotateWebhookSecret",
        "deleteWebhookEndpoint",
    ),
)
async def create_endpoint(
    body: EndpointIn, key: OrgAdmin, kernel: KernelDep
) -> EndpointWithSecretOut:
    """Events (`usage.threshold_crossed`, `usage.threshold_resolved`, `quota.blocked`, and
    for an endpoint of every org `invoice.close_failed`; all when `event_types` is empty)
    are POSTed to `url` as JSON, signed per Standard Webhooks (`webhook-id`,
    `webhook-timestamp`, `webhook-signature`) with the `secret` answered here and never
    again. Without `org_id`: every org's events (a key for every org). 422
    `url_not_allowed` for a URL whose host is or resolves to a loopback, private,
    link-local, multicast, unspecified or reserved address (unless the deployment sets
    BILLING_ALLOW_PRIVATE_WEBHOOKS); redirects are never followed. Needs
    `billing:admin`."""
    org_id = body.org_id or key.org_id
    if org_id is not None:
        key.require_org(org_id)
    endpoint = await kernel.notifications.add_endpoint(
        body.url,
        event_types=[str(t) for t in body.event_types],
        org_id=org_id,
        description=body.description,
    )
    return EndpointWithSecretOut.of(endpoint)


@router.get("/endpoints", operation_id="listWebhookEndpoints", summary="List webhook endpoints")
async def list_endpoints(
    key: OrgAdmin,
    kernel: KernelDep,
    org_id: Annotated[Slug | None, Query(description="Only this org's endpoints.")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[EndpointOut]:
    """Endpoints in the order they were registered, a page at a time, without their
    secrets. A key restricted to one org sees only that org's. Needs `billing:admin`."""
    org_id, only_org = _scope(key, org_id)
    rows = await kernel.notifications.endpoints(
        org_id=org_id, only_org=only_org, after=cursor, limit=limit + 1
    )
    found, next_cursor = page_of(rows, limit, lambda e: e.endpoint_id)
    return Page[EndpointOut](data=[EndpointOut.of(e) for e in found], next_cursor=next_cursor)


@router.get(
    "/endpoints/{endpoint_id}", operation_id="getWebhookEndpoint", summary="A webhook endpoint"
)
async def get_endpoint(endpoint_id: EndpointId, key: OrgAdmin, kernel: KernelDep) -> EndpointOut:
    """Needs `billing:admin`; 404 `endpoint_not_found` also for another org's."""
    return EndpointOut.of(await kernel.notifications.endpoint(endpoint_id, org_id=key.org_id))


@router.delete(
    "/endpoints/{endpoint_id}",
    operation_id="deleteWebhookEndpoint",
    summary="Remove a webhook endpoint",
    status_code=204,
)
async def delete_endpoint(endpoint_id: EndpointId, key: OrgAdmin, kernel: KernelDep) -> Response:
    """Nothing more is sent to it; its pending deliveries end failed. Needs `billing:admin`."""
    await kernel.notifications.remove_endpoint(endpoint_id, org_id=key.org_id)
    return Response(status_code=204)


@router.post(
    "/endpoints/{endpoint_id}/rotate-secret",
    operation_id="rotateWebhookSecret",
    summary="Give a webhook endpoint a new signing secret",
)
async def rotate_secret(
    endpoint_id: EndpointId, key: OrgAdmin, kernel: KernelDep
) -> EndpointWithSecretOut:
    """The new `secret`, shown only now. The old one goes on signing too (a second `v1,`
    signature) until `secret_rotated_until` (BILLING_WEBHOOK_SECRET_OVERLAP_HOURS, 24 by
    default), so the receiver can switch without losing a message. Needs `billing:admin`."""
    endpoint = await kernel.notifications.rotate_secret(endpoint_id, org_id=key.org_id)
    return EndpointWithSecretOut.of(endpoint)


@router.get("/deliveries", operation_id="listDeliveries", summary="The delivery log")
async def list_deliveries(
    key: OrgAdmin,
    kernel: KernelDep,
    org_id: Annotated[Slug | None, Query(description="Only this org's deliveries.")] = None,
    endpoint_id: Annotated[
        str | None, Query(max_length=32, description="Only this endpoint's.")
    ] = None,
    status: Annotated[DeliveryStatus | None, Query(description="Only in this status.")] = None,
    event_id: Annotated[str | None, Query(max_length=40, description="Only this event's.")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[DeliveryOut]:
    """Every delivery (webhook, email, Slack) newest first, a page at a time, each with
    every attempt: when, how long, the receiver's status code, the error. A key restricted
    to one org sees only that org's own (not those to an endpoint of every org, whose
    answers are the operator's). Needs `billing:admin`."""
    org_id, only_org = _scope(key, org_id)
    rows = await kernel.notifications.deliveries(
        org_id=org_id,
        only_org=only_org,
        endpoint_id=endpoint_id,
        status=status,
        event_id=event_id,
        after=cursor,
        limit=limit + 1,
    )
    found, next_cursor = page_of(rows, limit, lambda row: row[0].delivery_id)
    return Page[DeliveryOut](
        data=[DeliveryOut.of(d, attempts) for d, attempts in found], next_cursor=next_cursor
    )


@router.get("/deliveries/{delivery_id}", operation_id="getDelivery", summary="A delivery")
async def get_delivery(delivery_id: DeliveryId, key: OrgAdmin, kernel: KernelDep) -> DeliveryOut:
    """Needs `billing:admin`; 404 `delivery_not_found` also for another org's."""
    return DeliveryOut.of(*await kernel.notifications.delivery(delivery_id, org_id=key.org_id))


@router.post(
    "/deliveries/{delivery_id}/replay",
    operation_id="replayDelivery",
    summary="Send a delivery again",
    status_code=202,
)
async def replay_delivery(delivery_id: DeliveryId, key: OrgAdmin, kernel: KernelDep) -> DeliveryOut:
    """Pending again at once, from the start of the retry schedule, with the same
    `webhook-id` (the event's): a failed delivery once the receiver is fixed, or a delivered
    one the receiver lost. Needs `billing:admin`."""
    return DeliveryOut.of(*await kernel.notifications.replay(delivery_id, org_id=key.org_id))


def _scope(key: ApiKeyCaller, org_id: str | None) -> tuple[str | None, bool]:
    """What a list may show a key: the org asked for (a key restricted to one org: that org,
    and nothing else), and whether it is bound to that org alone."""
    if key.org_id is None:
        return org_id, False
    key.require_org(org_id or key.org_id)
    return key.org_id, True


@settings_router.get(
    "/{org_id}/notifications",
    operation_id="getOrgNotifications",
    summary="Where an org's alerts go besides webhooks",
)
async def get_channels(org_id: OrgId, key: OrgAdminOfPath, kernel: KernelDep) -> ChannelsOut:
    """Its Slack incoming webhook, and whether its owners and admins get email. Needs
    `billing:admin`."""
    return ChannelsOut.of(org_id, await kernel.notifications.channel_settings(org_id))


@settings_router.put(
    "/{org_id}/notifications",
    operation_id="putOrgNotifications",
    summary="Set where an org's alerts go besides webhooks",
)
async def put_channels(
    org_id: OrgId, body: ChannelsIn, key: OrgAdminOfPath, kernel: KernelDep
) -> ChannelsOut:
    """`slack_webhook_url`: a Slack incoming webhook that gets each crossing and block as a
    message (null: none); `email`: whether the org's owners and admins with an email address
    get them (when the kernel has BILLING_SMTP_URL), and `email_events` which (left out:
    crossings, blocks, failed payments and invoices waiting for a card). Needs
    `billing:admin`."""
    settings = await kernel.notifications.put_channel_settings(
        org_id,
        slack_webhook_url=body.slack_webhook_url,
        email=body.email,
        email_events=body.email_types(),
    )
    return ChannelsOut.of(org_id, settings)
