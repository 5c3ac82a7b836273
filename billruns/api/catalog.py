"""Catalog API: price plans with their components, prices and tiers.

* ``GET /api/v1/catalog/price-plans/`` lists plans (filters ``code``, ``currency``, ``active``, ``product``);
  ``GET .../<code>/`` shows one with its components, prices and tiers;
* ``POST /api/v1/catalog/price-plans/`` creates a whole plan in one transaction
  (billruns.services.catalog.price_plan_create): every rule is checked first and a bad input is a 400 naming
  each field by path (``components[0].prices[1].tiers[2].from_quantity``), with nothing stored.

Staff read (CSR, Supervisor, Billing admin); only Billing admins create. Biller API clients get 403: the
catalog is this product's configuration, not a biller's data.
"""

from __future__ import annotations

import django_filters
from django.db.models import Prefetch, QuerySet
from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.response import Response

from accounts.api import schema as _schema  # noqa: F401  (registers the Api-Key scheme with drf-spectacular)
from accounts.api.permissions import is_api_client
from billing_mgmt.api.idempotency import idempotent
from billing_mgmt.api.schema import IDEMPOTENCY_KEY_PARAMETER, error_responses
from billing_mgmt.errors import ApplicationError
from billing_mgmt.roles import BILLING_ADMIN, has_role, is_staff_member

from ..models import PlanComponent, Price, PricePlan
from ..services.catalog import price_plan_create
from .serializers import (
    PricePlanCreateSerializer,
    PricePlanDetailSerializer,
    PricePlanSerializer,
    error_paths,
)

TAG = "catalog"


class CatalogApiPermission(BasePermission):
    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        if is_api_client(user):
            self.message = "The catalog API is for staff; biller API clients have no access."
            return False
        if request.method in SAFE_METHODS:
            return is_staff_member(user)
        return has_role(user, BILLING_ADMIN)


def api_price_plans() -> QuerySet[PricePlan]:
    return PricePlan.objects.select_related("product", "billing_term_scheme")


def api_price_plan_detail() -> QuerySet[PricePlan]:
    """A plan with everything the detail shows: four queries whatever its size."""
    prices = (
        Price.objects.select_related("frequency")
        .prefetch_related("tiers")
        .order_by("frequency", "valid_from")
    )
    components = (
        PlanComponent.objects.select_related("usage_type", "tax_category")
        .prefetch_related(Prefetch("prices", queryset=prices))
        .order_by("position", "id")
    )
    return api_price_plans().prefetch_related(Prefetch("components", queryset=components))


class PricePlanFilter(django_filters.FilterSet):
    code = django_filters.CharFilter(field_name="code", lookup_expr="iexact")
    currency = django_filters.CharFilter(field_name="currency", lookup_expr="iexact", label="ISO 4217 code")
    active = django_filters.BooleanFilter(field_name="active")
    product = django_filters.CharFilter(field_name="product__code", label="Product code")

    class Meta:
        model = PricePlan
        fields: list[str] = []


@extend_schema_view(
    get=extend_schema(
        summary="List price plans",
        description="Staff only (CSR, Supervisor, Billing admin). Components and prices are in the detail.",
        responses={200: PricePlanSerializer(many=True), **error_responses(400, 401, 403)},
    ),
)
@extend_schema(tags=[TAG])
class PricePlanListView(generics.ListAPIView):
    serializer_class = PricePlanSerializer
    permission_classes = [IsAuthenticated, CatalogApiPermission]
    filterset_class = PricePlanFilter
    ordering_fields = ["code", "name", "currency"]
    ordering = ["code"]

    def get_queryset(self):
        return api_price_plans()

    @extend_schema(
        summary="Create a price plan with its components, prices and tiers",
        description=(
            "Billing admins only. All or nothing: every rule is checked first (prices of one component and "
            "frequency do not overlap; each price fits its component's kind; tiers start at 0, follow each "
            "other without gap or overlap, the last open-ended; nothing negative; amounts in the currency's "
            "minor units). A 400 names each bad field by path, e.g. "
            "`components[0].prices[1].tiers[2].from_quantity`, and stores nothing. See docs/catalog.md."
        ),
        request=PricePlanCreateSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: PricePlanDetailSerializer, **error_responses(400, 401, 403, 409)},
    )
    @idempotent
    def post(self, request):
        serializer = PricePlanCreateSerializer(data=request.data, context=self.get_serializer_context())
        if not serializer.is_valid():
            raise ApplicationError(
                "The request is not valid. Nothing was stored.", fields=error_paths(serializer.errors)
            )
        plan = price_plan_create(data=serializer.validated_data, actor=request.user)
        fresh = api_price_plan_detail().get(pk=plan.pk)
        location = reverse("api-price-plan-detail", kwargs={"code": plan.code})
        return Response(
            PricePlanDetailSerializer(fresh).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": location},
        )


@extend_schema_view(
    get=extend_schema(
        summary="Get a price plan with its components, prices and tiers",
        responses={200: PricePlanDetailSerializer, **error_responses(401, 403, 404)},
    ),
)
@extend_schema(tags=[TAG])
class PricePlanDetailView(generics.RetrieveAPIView):
    serializer_class = PricePlanDetailSerializer
    permission_classes = [IsAuthenticated, CatalogApiPermission]
    lookup_field = "code"
    filter_backends: list = []

    def get_queryset(self):
        return api_price_plan_detail()
