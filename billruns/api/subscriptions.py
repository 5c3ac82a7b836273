"""Subscriptions API.

* ``GET /api/v1/subscriptions/`` (filters ``account``, ``service_identifier``, ``price_plan``, ``status``,
  ``active_on``) and ``GET .../<id>/``;
* ``POST /api/v1/subscriptions/`` creates one (billruns.services.subscription_create: the plan's currency must
  be the account's billing currency, the service identifier free on those dates, ...);
* ``PATCH .../<id>/`` changes dates, processing sequence, tax jurisdiction, or suspends and resumes;
* ``POST .../<id>/cancel/`` ends it on an end date (which may lie before periods already billed: the next bill
  credits the days).

Who: staff (CSR, Supervisor, Billing admin) read every subscription; Billing admins write. A biller API
client reads, and creates, subscriptions of the accounts it references (accounts.selectors.
accounts_for_biller): its mediation or ordering system needs to know which subscription a service identifier
is on, and to add new ones; another biller's account or subscription answers 404 (or "does not exist"), as if
it did not exist. Changing and cancelling stay with billing admins (a cancellation credits money), so a biller
gets 403 there. Writes honour ``Idempotency-Key``.
"""

from __future__ import annotations

import django_filters
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.response import Response

from accounts.api import schema as _schema  # noqa: F401  (registers the Api-Key scheme with drf-spectacular)
from accounts.api.permissions import caller_biller, is_api_client
from accounts.models import Biller, BillerReference
from billing_mgmt.api.idempotency import idempotent
from billing_mgmt.api.schema import IDEMPOTENCY_KEY_PARAMETER, error_responses
from billing_mgmt.roles import BILLING_ADMIN, has_role, is_staff_member

from ..models import Subscription
from ..services.subscriptions import subscription_cancel, subscription_create, subscription_update
from .serializers import (
    SubscriptionCancelSerializer,
    SubscriptionCreateSerializer,
    SubscriptionSerializer,
    SubscriptionUpdateSerializer,
)

TAG = "subscriptions"
BILLER_ACTIONS = ("list", "retrieve", "create")


class SubscriptionApiPermission(BasePermission):
    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        if is_api_client(user):
            if getattr(view, "action", None) in BILLER_ACTIONS:
                return True
            self.message = (
                "Biller clients read and create subscriptions of their accounts; billing admins change and "
                "cancel them."
            )
            return False
        if request.method in SAFE_METHODS:
            return is_staff_member(user)
        return has_role(user, BILLING_ADMIN)


def api_subscriptions(*, biller: Biller | None) -> QuerySet[Subscription]:
    """Subscriptions with what the API shows (one query for a page); a biller's only for its accounts."""
    qs = Subscription.objects.select_related(
        "account", "price_plan", "frequency", "billing_term_scheme", "tax_jurisdiction"
    )
    if biller is not None:
        qs = qs.filter(
            Exists(BillerReference.objects.filter(biller=biller, account_id=OuterRef("account_id")))
        )
    return qs


class SubscriptionFilter(django_filters.FilterSet):
    account = django_filters.CharFilter(field_name="account__number", label="Account number")
    service_identifier = django_filters.CharFilter(field_name="service_identifier")
    price_plan = django_filters.CharFilter(field_name="price_plan__code", label="Price plan code")
    status = django_filters.ChoiceFilter(field_name="status", choices=Subscription.Status.choices)
    active_on = django_filters.DateFilter(method="_active_on", label="In service on this date")

    class Meta:
        model = Subscription
        fields: list[str] = []

    def _active_on(self, queryset, name, value):
        return queryset.filter(Q(end_date__isnull=True) | Q(end_date__gte=value), start_date__lte=value)


_ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The subscription's id.")


@extend_schema_view(
    list=extend_schema(
        summary="List subscriptions",
        description="Staff see all; a biller client sees those of the accounts it references.",
        responses={200: SubscriptionSerializer(many=True), **error_responses(400, 401, 403)},
    ),
    retrieve=extend_schema(
        summary="Get a subscription",
        parameters=[_ID],
        responses={200: SubscriptionSerializer, **error_responses(401, 403, 404)},
    ),
)
@extend_schema(tags=[TAG])
class SubscriptionViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    serializer_class = SubscriptionSerializer
    permission_classes = [IsAuthenticated, SubscriptionApiPermission]
    filterset_class = SubscriptionFilter
    ordering_fields = ["id", "start_date", "service_identifier"]
    ordering = ["id"]

    def get_queryset(self):
        return api_subscriptions(biller=caller_biller(self.request))

    def answer(self, subscription: Subscription, status_code: int = status.HTTP_200_OK, headers=None):
        fresh = self.get_queryset().get(pk=subscription.pk)
        return Response(SubscriptionSerializer(fresh).data, status=status_code, headers=headers)

    @extend_schema(
        summary="Create a subscription",
        description=(
            "Billing admins, or a biller client for an account it references. `frequency` defaults to the "
            "account's billing frequency, `billing_term_scheme` to the plan's. Refused (400, with the "
            "field): a plan in another currency than the account's billing currency, an inactive plan, a "
            "service identifier already subscribed on any of the dates, end before start, a scheme of the "
            "other kind (prepaid/normal) than the plan's, no recurring price for the frequency on the start "
            "date."
        ),
        request=SubscriptionCreateSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: SubscriptionSerializer, **error_responses(400, 401, 403, 409)},
    )
    @idempotent
    def create(self, request, *args, **kwargs):
        serializer = SubscriptionCreateSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        subscription = subscription_create(**serializer.service_kwargs(), actor=request.user)
        location = reverse("api-subscription-detail", kwargs={"pk": subscription.pk})
        return self.answer(subscription, status.HTTP_201_CREATED, headers={"Location": location})

    @extend_schema(
        summary="Change a subscription's dates, sequence or jurisdiction; suspend or resume it",
        description=(
            "Billing admins only. Only the fields sent change. `status`: `suspended` or `active` (resume); "
            "cancel with `POST .../cancel/`. The start date cannot move once a period is rated."
        ),
        parameters=[_ID, IDEMPOTENCY_KEY_PARAMETER],
        request=SubscriptionUpdateSerializer,
        responses={200: SubscriptionSerializer, **error_responses(400, 401, 403, 404, 409)},
    )
    @idempotent
    def partial_update(self, request, *args, **kwargs):
        subscription = self.get_object()
        serializer = SubscriptionUpdateSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        subscription_update(
            subscription=subscription, data=dict(serializer.validated_data), actor=request.user
        )
        return self.answer(subscription)

    @extend_schema(
        operation_id="subscriptions_cancel",
        summary="Cancel a subscription",
        description=(
            "Billing admins only. Sets the end date (the last day of service) and status `cancelled`. The "
            "end date may lie before periods already billed in advance: the next bill credits those days. "
            "`409 already_cancelled` for a cancelled subscription (change its end date with PATCH)."
        ),
        parameters=[_ID, IDEMPOTENCY_KEY_PARAMETER],
        request=SubscriptionCancelSerializer,
        responses={200: SubscriptionSerializer, **error_responses(400, 401, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def cancel(self, request, *args, **kwargs):
        subscription = self.get_object()
        serializer = SubscriptionCancelSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        subscription_cancel(
            subscription=subscription, end_date=serializer.validated_data["end_date"], actor=request.user
        )
        return self.answer(subscription)
