"""Accounts API views: parse with an input serializer, call a service or a selector, answer an account.

Scoping is done by the querysets (accounts.api.selectors): a biller's query never returns another biller's
account, so addressing one answers 404 exactly like a number that does not exist.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, mixins, status, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from accounts.models import Account
from accounts.services import account_create, account_update
from billing_mgmt.api.idempotency import idempotent
from billing_mgmt.api.schema import IDEMPOTENCY_KEY_PARAMETER, error_responses

from . import schema as _schema  # noqa: F401  (registers the Api-Key scheme with drf-spectacular)
from .filters import AccountFilter
from .permissions import AccountApiPermission, BillerClientOnly, caller_biller
from .selectors import api_account_by_reference, api_accounts
from .serializers import AccountCreateSerializer, AccountSerializer, AccountUpdateSerializer

TAG = "accounts"


class _AccountAnswerMixin:
    """Shared by the number- and reference-addressed views: update and answer with the account as stored."""

    def answer(self, account: Account, status_code: int = status.HTTP_200_OK, headers=None) -> Response:
        fresh = api_accounts(biller=caller_biller(self.request)).get(pk=account.pk)
        data = AccountSerializer(fresh, context=self.get_serializer_context()).data
        return Response(data, status=status_code, headers=headers)

    def update_account(self, request, account: Account, *, partial: bool) -> Response:
        serializer = AccountUpdateSerializer(
            instance=account, data=request.data, partial=partial, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        account_update(
            account=account,
            data=serializer.account_fields(),
            billing_profile=serializer.profile_fields(),
            actor=request.user,
        )
        return self.answer(account)


_WRITE = {"request": AccountUpdateSerializer, "parameters": [IDEMPOTENCY_KEY_PARAMETER]}


@extend_schema_view(
    list=extend_schema(
        summary="List accounts",
        description="Billers see only accounts with a reference at their biller; staff see all.",
        responses={200: AccountSerializer(many=True), **error_responses(400, 401, 403)},
    ),
    retrieve=extend_schema(
        summary="Get an account by number",
        responses={200: AccountSerializer, **error_responses(401, 403, 404)},
    ),
    update=extend_schema(
        summary="Replace an account's fields by number",
        description="`name` is required; fields left out keep their values.",
        responses={200: AccountSerializer, **error_responses(400, 401, 403, 404, 409)},
        **_WRITE,
    ),
    partial_update=extend_schema(
        summary="Change some of an account's fields by number",
        responses={200: AccountSerializer, **error_responses(400, 401, 403, 404, 409)},
        **_WRITE,
    ),
)
@extend_schema(tags=[TAG])
class AccountViewSet(
    _AccountAnswerMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    serializer_class = AccountSerializer
    permission_classes = [IsAuthenticated, AccountApiPermission]
    lookup_field = "number"
    filterset_class = AccountFilter
    ordering_fields = ["number", "name", "type", "status", "created_at", "updated_at"]
    ordering = ["number"]

    def get_queryset(self):
        return api_accounts(biller=caller_biller(self.request))

    @extend_schema(
        summary="Create an account",
        description=(
            "A biller client must send `external_ref`: the new account is bound to that reference at the "
            "calling biller. Staff (Billing admin) may bind one with `biller` + `external_ref`."
        ),
        request=AccountCreateSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: AccountSerializer, **error_responses(400, 401, 403, 409)},
    )
    @idempotent
    def create(self, request, *args, **kwargs):
        serializer = AccountCreateSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        account = account_create(**serializer.service_kwargs(), actor=request.user)
        location = reverse("api-account-detail", kwargs={"number": account.number})
        return self.answer(account, status.HTTP_201_CREATED, headers={"Location": location})

    @idempotent
    def update(self, request, *args, **kwargs):
        return self.update_account(request, self.get_object(), partial=False)

    @idempotent
    def partial_update(self, request, *args, **kwargs):
        return self.update_account(request, self.get_object(), partial=True)


_REF_PARAMETER = OpenApiParameter(
    "external_ref", OpenApiTypes.STR, OpenApiParameter.PATH, description="The calling biller's reference."
)


@extend_schema_view(
    get=extend_schema(
        summary="Get an account by the calling biller's reference",
        responses={200: AccountSerializer, **error_responses(401, 403, 404)},
    ),
    put=extend_schema(
        summary="Replace an account's fields by the calling biller's reference",
        description="`name` is required; fields left out keep their values.",
        responses={200: AccountSerializer, **error_responses(400, 401, 403, 404, 409)},
        **_WRITE,
    ),
    patch=extend_schema(
        summary="Change some of an account's fields by the calling biller's reference",
        responses={200: AccountSerializer, **error_responses(400, 401, 403, 404, 409)},
        **_WRITE,
    ),
)
@extend_schema(tags=[TAG], parameters=[_REF_PARAMETER])
class AccountByReferenceView(_AccountAnswerMixin, generics.GenericAPIView):
    """For biller clients only: the account is found by the biller's own reference, never another's."""

    serializer_class = AccountSerializer
    permission_classes = [IsAuthenticated, BillerClientOnly]
    filter_backends: list = []
    pagination_class = None

    def get_queryset(self):
        biller = caller_biller(self.request)
        if biller is None:  # schema generation
            return Account.objects.none()
        return api_account_by_reference(biller=biller, external_ref=self.kwargs["external_ref"])

    def get_object(self) -> Account:
        return get_object_or_404(self.get_queryset())

    def get(self, request, external_ref: str):
        return Response(AccountSerializer(self.get_object(), context=self.get_serializer_context()).data)

    @idempotent
    def put(self, request, external_ref: str):
        return self.update_account(request, self.get_object(), partial=False)

    @idempotent
    def patch(self, request, external_ref: str):
        return self.update_account(request, self.get_object(), partial=True)
