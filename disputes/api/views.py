"""Cases API views: cases of the caller's accounts with their status, dispute and history, raising an
inquiry, and the catalog of service processes.

* ``GET /api/v1/cases/`` and ``/cases/{number}/``; ``POST /api/v1/cases/`` (an inquiry, ``channel="api"``)
  through disputes.services.case_open;
* ``GET /api/v1/service-processes/``: the active catalog, for building request forms.

A biller API client sees and raises cases only for the accounts it references (accounts.BillerReference):
another account's case is absent from the list and a 404 on its own, as if it did not exist, and an account
it does not reference is a 404 when raising one (as in the payments API). It reads the public history only
(what the customer reads); staff read internal notes and assignments too. Status changes, comments and
decisions are made on the CSR case page, not here.
"""

from __future__ import annotations

import hashlib

import django_filters
from django.db.models import Exists, OuterRef, Prefetch, QuerySet
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from accounts.api import schema as _schema  # noqa: F401  (registers the Api-Key scheme with drf-spectacular)
from accounts.api.permissions import caller_biller
from accounts.models import Account, Biller, BillerReference
from billing_mgmt.api.filters import UtcIsoDateTimeFilter
from billing_mgmt.api.idempotency import HEADER as IDEMPOTENCY_HEADER
from billing_mgmt.api.idempotency import client_identity, idempotent
from billing_mgmt.api.schema import IDEMPOTENCY_KEY_PARAMETER, error_responses
from billing_mgmt.errors import ApplicationError, NotFound

from ..models import Case, CaseEvent, ServiceProcess
from ..selectors import staff_processes
from ..services import case_open
from .permissions import CasesPermission, ServiceProcessesPermission
from .serializers import (
    CaseDetailSerializer,
    CaseSerializer,
    InquiryCreateSerializer,
    ServiceProcessSerializer,
)

CASES_TAG = "cases"
PROCESSES_TAG = "service-processes"

# Case.idempotency_key holds 100 characters: longer namespaced keys are stored as a digest (still unique per
# client and key).
_MAX_SERVICE_KEY = 100


def case_idempotency_key(user, key: str) -> str:
    """The case's idempotency key for the client's key: namespaced by client, so two billers' keys never
    meet (Case.idempotency_key is unique across every channel)."""
    client = client_identity(user)
    namespaced = f"api:{client}:{key}"
    if len(namespaced) <= _MAX_SERVICE_KEY:
        return namespaced
    return f"api:{client}:sha256:{hashlib.sha256(key.encode()).hexdigest()[:64]}"


# --- what the caller sees -----------------------------------------------------------------------------------


def _referenced_by(biller: Biller, field: str = "account_id") -> Exists:
    return Exists(BillerReference.objects.filter(biller=biller, account_id=OuterRef(field)))


def cases_visible(*, biller: Biller | None, history: bool = False) -> QuerySet[Case]:
    """Cases with what the API shows of them in a fixed number of queries; a biller's are those of the
    accounts it references. ``history``: with the events the caller may read (``shown_events``), public
    ones only for a biller."""
    cases = Case.objects.select_related(
        "account", "process", "owner", "statement", "dispute", "dispute__statement"
    )
    if biller is not None:
        cases = cases.filter(_referenced_by(biller))
    if history:
        events = CaseEvent.objects.order_by("created_at", "id")
        if biller is not None:
            events = events.filter(public=True)
        cases = cases.prefetch_related(Prefetch("events", queryset=events, to_attr="shown_events"))
    return cases


def _account_for(request, number: str) -> Account:
    """The account a case is raised for, by its number; a biller names an account it references (another is
    a 404, as if it did not exist)."""
    accounts = Account.objects.all()
    biller = caller_biller(request)
    if biller is not None:
        accounts = accounts.filter(_referenced_by(biller, "pk"))
    account = accounts.filter(number=number).first()
    if account is None:
        raise NotFound(f"No account {number}.", fields={"account": ["No such account."]})
    return account


def _inquiry_process(code: str) -> ServiceProcess:
    process = ServiceProcess.objects.filter(code=code).first()
    if process is None:
        raise ApplicationError(
            f"No service process {code}.", fields={"process": ["No such service process."]}
        )
    if process.action != ServiceProcess.Action.INQUIRY:
        raise ApplicationError(
            f"{process.name} is not raised through the API.",
            code="not_an_inquiry",
            fields={
                "process": [
                    "Only inquiries are raised through the API (a service process whose action is "
                    "'inquiry'); disputes and other requests are raised by a CSR or in the portal."
                ]
            },
        )
    return process


class CaseFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(field_name="status", choices=Case.Status.choices)
    process = django_filters.CharFilter(field_name="process__code", label="Service process code")
    account = django_filters.CharFilter(field_name="account__number", label="Account number")
    channel = django_filters.ChoiceFilter(field_name="channel", choices=Case.Channel.choices)
    updated_since = UtcIsoDateTimeFilter(
        field_name="updated_at", lookup_expr="gte", label="Changed at or after (ISO 8601 date-time)"
    )

    class Meta:
        model = Case
        fields: list[str] = []


_NUMBER = OpenApiParameter(
    "number", OpenApiTypes.STR, OpenApiParameter.PATH, description="The case's tracking number."
)


class _CaseContext:
    def get_serializer_context(self):
        return {
            **super().get_serializer_context(),
            "biller": caller_biller(self.request),
            "now": timezone.now(),
        }


@extend_schema_view(
    get=extend_schema(
        summary="List cases",
        description=(
            "Newest first, without their history (`GET /api/v1/cases/{number}/` has it). Staff with "
            "`disputes.view_case` see every account's; a biller client sees the cases of the accounts it "
            "references only. Filters: `status`, `process` (code), `account` (number), `channel`, "
            "`updated_since` (for incremental syncs)."
        ),
        responses={200: CaseSerializer(many=True), **error_responses(400, 401, 403)},
    ),
    post=extend_schema(
        summary="Raise an inquiry",
        description=(
            "A case of a service process whose action is `inquiry` (e.g. `billing-inquiry`) on the account "
            "`account` (its number), with `channel` `api`. The customer is e-mailed the tracking number. "
            "Biller clients for the accounts they reference (another account is a `404`); staff with "
            "`disputes.add_case`. `201` with the case; `200` with the first case when the idempotency key "
            "(the `Idempotency-Key` header or `idempotency_key` in the body) was used before. `400` "
            "(nothing stored): no subject, an unknown or inactive process, a process that is not an "
            "inquiry, a card number in the text."
        ),
        request=InquiryCreateSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={
            201: CaseDetailSerializer,
            200: OpenApiResponse(
                CaseDetailSerializer, description="The key was used before: the first case."
            ),
            **error_responses(400, 401, 403, 404, 409),
        },
    ),
)
@extend_schema(tags=[CASES_TAG])
class CaseListView(_CaseContext, generics.ListAPIView):
    serializer_class = CaseSerializer
    permission_classes = [IsAuthenticated, CasesPermission]
    filterset_class = CaseFilter
    ordering_fields = ["created_at", "updated_at", "due_at"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self):
        return cases_visible(biller=caller_biller(self.request))

    @idempotent
    def post(self, request):
        data = InquiryCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        account = _account_for(request, values["account"])
        process = _inquiry_process(values["process"])
        key = (request.headers.get(IDEMPOTENCY_HEADER) or "").strip() or values.get("idempotency_key")
        case, created = case_open(
            account=account,
            process=process,
            subject=values["subject"],
            description=values.get("description", ""),
            channel=Case.Channel.API,
            actor=request.user,
            idempotency_key=case_idempotency_key(request.user, key) if key else None,
        )
        shown = cases_visible(biller=None, history=True).get(pk=case.pk)
        return Response(
            CaseDetailSerializer(shown, context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
            headers={"Location": reverse("api-case", kwargs={"number": case.number})},
        )


@extend_schema_view(
    get=extend_schema(
        summary="Get a case with its dispute and history",
        description=(
            "Staff with `disputes.view_case`; a biller client for the accounts it references (another "
            "account's case is a `404`). The history is oldest first; a biller client reads the public "
            "events only (what the customer reads), staff also the internal notes and assignments."
        ),
        responses={200: CaseDetailSerializer, **error_responses(401, 403, 404)},
    )
)
@extend_schema(tags=[CASES_TAG], parameters=[_NUMBER])
class CaseDetailView(_CaseContext, generics.RetrieveAPIView):
    serializer_class = CaseDetailSerializer
    permission_classes = [IsAuthenticated, CasesPermission]
    filter_backends: list = []
    lookup_field = "number"

    def get_queryset(self):
        return cases_visible(biller=caller_biller(self.request), history=True)


@extend_schema_view(
    get=extend_schema(
        summary="List the active service processes",
        description=(
            "The catalog, in its Help Center order, for building request forms: what each process is for, "
            "what approving it does (`action`) and its service level. Only `api_requestable` ones "
            "(inquiries) are raised through `POST /api/v1/cases/`. Biller clients, and staff with "
            "`disputes.view_serviceprocess`."
        ),
        responses={200: ServiceProcessSerializer(many=True), **error_responses(401, 403)},
    )
)
@extend_schema(tags=[PROCESSES_TAG])
class ServiceProcessListView(generics.ListAPIView):
    serializer_class = ServiceProcessSerializer
    permission_classes = [IsAuthenticated, ServiceProcessesPermission]
    filter_backends: list = []
    pagination_class = None

    def get_queryset(self):
        return staff_processes()  # the active ones, in Help Center order
