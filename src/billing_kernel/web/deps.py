"""Request dependencies, shared by the API's routes and the billing page: the kernel, the
caller, and the org a request is about, as named `Annotated` aliases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from billing_kernel.auth.rules import ApiKeyCaller, Principal, Scope, looks_like_api_key
from billing_kernel.auth.tokens import TokenVerifier
from billing_kernel.common.validation import ID_PATTERN_TEXT, MAX_ID_LENGTH
from billing_kernel.config import Settings
from billing_kernel.errors import Forbidden, OrgAmbiguous, OrgNotFound, Unauthenticated
from billing_kernel.kernel import Kernel
from billing_kernel.members.rules import ADMIN_ROLES, MemberRole
from billing_kernel.metrics.rules import METRIC_KEY_PATTERN_TEXT
from billing_kernel.web.guards import require_same_origin

bearer = HTTPBearer(
    auto_error=False,
    description="A user JWT, or a service API key (`bk_...`). Users may send the JWT in the "
    "auth cookie instead.",
)


def kernel_of(request: Request) -> Kernel:
    kernel: Kernel = request.app.state.kernel
    return kernel


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# `async def` on purpose: FastAPI runs a plain `def` dependency in a worker thread, a thread
# hop on every request for what is an attribute read. The dependencies on the hot paths read
# app.state themselves: each dependency FastAPI resolves costs time on every request.
async def get_kernel(request: Request) -> Kernel:
    return kernel_of(request)


async def get_settings(request: Request) -> Settings:
    return settings_of(request)


KernelDep = Annotated[Kernel, Depends(get_kernel)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    """The caller: a service by its API key, or a user by their JWT (bearer or cookie)."""
    settings = settings_of(request)
    token = credentials.credentials if credentials else request.cookies.get(settings.auth_cookie)
    if token and credentials is None:
        require_same_origin(request)  # a browser sends the cookie cross-site too
    if not token:
        raise Unauthenticated(
            "no credentials: send `Authorization: Bearer <token or API key>` or the "
            f"`{settings.auth_cookie}` cookie"
        )
    return await authenticate(request, token)


async def authenticate(request: Request, token: str) -> Principal:
    """The caller a bearer token names: a service by its API key, or a user by their JWT.
    Named in the request's log line by its key id or user id (never by the token)."""
    principal: Principal
    if looks_like_api_key(token):
        principal = await kernel_of(request).api_keys.authenticate(token)
    else:
        verifier: TokenVerifier = request.app.state.verifier
        principal = await verifier.verify(token)
    request.state.caller = (
        f"key:{principal.key_id}"
        if isinstance(principal, ApiKeyCaller)
        else f"user:{principal.user_id}"
    )
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
OrgHeader = Annotated[
    str | None,
    Header(
        alias="X-Org-Id",
        description="The org the request is about. For a user, optional when they belong to "
        "exactly one org; for a service key, optional when the key is restricted to one org.",
    ),
]


@dataclass(frozen=True, slots=True)
class OrgAccess:
    """The org a request is about, who is asking, and the kernel to ask with (for a user,
    confined to their orgs by row-level security)."""

    org_id: str
    principal: Principal
    role: MemberRole | None
    kernel: Kernel


def org_access(
    *, scopes: Collection[Scope], roles: Collection[MemberRole] = tuple(MemberRole)
) -> Callable[..., Awaitable[OrgAccess]]:
    """A dependency granting access to the request's org to services with one of `scopes`
    and to members with one of `roles`."""

    async def dependency(
        request: Request, principal: PrincipalDep, x_org_id: OrgHeader = None
    ) -> OrgAccess:
        kernel = kernel_of(request)
        if isinstance(principal, ApiKeyCaller):
            x_org_id = x_org_id or principal.org_id  # a key for one org needs no header
            if not x_org_id:
                raise OrgAmbiguous("a service key must name the org in the X-Org-Id header")
            require_scope(principal, scopes)
            principal.require_org(x_org_id)
            request.state.org_id = x_org_id
            return OrgAccess(x_org_id, principal, None, kernel)
        org_id, role = user_org(await kernel.members.memberships(principal.user_id), x_org_id)
        request.state.org_id = org_id
        if role not in roles:
            allowed = " or ".join(sorted(r.value for r in roles))
            raise Forbidden(f"this needs the {allowed} role in the org; you are {role.value}")
        return OrgAccess(org_id, principal, role, kernel.for_user(principal.user_id))

    return dependency


def user_org(
    memberships: Mapping[str, MemberRole], requested: str | None
) -> tuple[str, MemberRole]:
    """The org a user's request is about, and their role in it."""
    if requested is not None:
        if requested not in memberships:  # the same answer as for an org that does not exist
            raise OrgNotFound(f"no org {requested!r}", org_id=requested)
        return requested, memberships[requested]
    if len(memberships) == 1:
        [(org_id, role)] = memberships.items()
        return org_id, role
    if not memberships:
        raise OrgNotFound("you are not a member of any org")
    raise OrgAmbiguous(
        f"you belong to {len(memberships)} orgs; name one in the X-Org-Id header",
        orgs=sorted(memberships),
    )


def require_access(
    access: OrgAccess, what: str, scopes: Collection[Scope], *, members: bool
) -> None:
    """For a route whose access admits more than one kind of request: `what` the request
    asks takes a key with one of `scopes`, or (when `members`) a member of the org."""
    if isinstance(access.principal, ApiKeyCaller):
        require_scope(access.principal, scopes)
    elif not members:
        needed = " or ".join(sorted(scopes))
        raise Forbidden(f"{what} needs a service API key with the {needed} scope")


def require_scope(caller: ApiKeyCaller, scopes: Collection[Scope]) -> None:
    if not caller.scopes & set(scopes):
        needed = " or ".join(sorted(scopes))
        raise Forbidden(f"this API key lacks the {needed} scope")


def api_key_with(*scopes: Scope) -> Callable[..., Awaitable[ApiKeyCaller]]:
    """A dependency admitting only API keys with one of `scopes`."""

    async def dependency(principal: PrincipalDep) -> ApiKeyCaller:
        if not isinstance(principal, ApiKeyCaller):
            raise Forbidden("this needs a service API key")
        require_scope(principal, scopes)
        return principal

    return dependency


READ_SCOPES = (Scope.QUOTA_CHECK, Scope.BILLING_ADMIN)
MemberAccess = Annotated[OrgAccess, Depends(org_access(scopes=READ_SCOPES))]
AdminAccess = Annotated[
    OrgAccess, Depends(org_access(scopes=(Scope.BILLING_ADMIN,), roles=ADMIN_ROLES))
]
quota_access = org_access(scopes=(*READ_SCOPES, Scope.USAGE_WRITE))
QuotaAccess = Annotated[OrgAccess, Depends(quota_access)]
"""Members, and keys that may ask for quota decisions or consume (see `require_access`)."""
usage_writer = api_key_with(Scope.USAGE_WRITE)
UsageWriter = Annotated[ApiKeyCaller, Depends(usage_writer)]
OrgAdmin = Annotated[ApiKeyCaller, Depends(api_key_with(Scope.BILLING_ADMIN))]

InvoiceId = Annotated[
    str, Path(max_length=40, pattern=r"^[A-Za-z0-9_-]+$", description="The invoice's id.")
]

OrgId = Annotated[
    str,
    Path(description="The product's org id.", max_length=MAX_ID_LENGTH, pattern=ID_PATTERN_TEXT),
]


async def _org_admin_of_path(org_id: OrgId, key: OrgAdmin) -> ApiKeyCaller:
    key.require_org(org_id)
    return key


OrgAdminOfPath = Annotated[ApiKeyCaller, Depends(_org_admin_of_path)]
"""A `billing:admin` key that may act for the org named in the path."""


def is_deployment_admin(caller: object) -> bool:
    """Whether `caller` is what `DeploymentAdmin` admits: a `billing:admin` key valid for
    every org (for what a route shows only to such a key: every org's figures)."""
    return (
        isinstance(caller, ApiKeyCaller)
        and caller.org_id is None
        and Scope.BILLING_ADMIN in caller.scopes
    )


async def _deployment_admin(key: OrgAdmin) -> ApiKeyCaller:
    if key.org_id is not None:
        raise Forbidden(
            f"this API key is restricted to org {key.org_id!r}; this is the whole deployment's "
            "(plans, metrics, coupons, every org's figures) and needs a key for every org"
        )
    return key


DeploymentAdmin = Annotated[ApiKeyCaller, Depends(_deployment_admin)]
"""A `billing:admin` key valid for every org: for what changes the whole deployment."""

MetricKey = Annotated[
    str,
    Path(
        description="A metric key, e.g. `tokens`: 1 to 64 lowercase letters, digits and _, "
        "starting with a letter.",
        pattern=METRIC_KEY_PATTERN_TEXT,
    ),
]
