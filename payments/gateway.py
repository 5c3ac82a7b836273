"""The payment gateway interface autopay charges through, and a fake gateway for development and tests.

A gateway is any object with two methods (settings.PAYMENT_GATEWAY names its class; ``gateway()`` makes one):

* ``charge(*, token, amount, currency, idempotency_key) -> ChargeResult``: charge a stored method (the
  processor's token). The idempotency key is passed to the processor, which must charge at most once per key
  (every real processor API has this: Stripe's Idempotency-Key, Adyen's, Braintree's). It raises
  ``GatewayTimeout`` when it cannot tell whether the charge happened (no answer in time).
* ``lookup(*, idempotency_key) -> ChargeResult``: what became of the charge made with that key (the
  reconciliation task asks after a timeout); ``UNKNOWN`` while the processor does not know yet.

Amounts are Decimal in the currency's minor units; tokens never carry card numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from threading import Lock
from typing import Protocol

from django.conf import settings
from django.db import models
from django.utils.module_loading import import_string


class ChargeOutcome(models.TextChoices):
    SUCCEEDED = "succeeded", "Succeeded"
    DECLINED = "declined", "Declined"
    UNKNOWN = "unknown", "Unknown (no answer in time)"


@dataclass(frozen=True)
class ChargeResult:
    outcome: str
    processor_reference: str = ""
    message: str = ""


class GatewayTimeout(Exception):
    """The gateway did not answer in time: the charge may or may not have happened."""


class PaymentGateway(Protocol):
    def charge(self, *, token: str, amount: Decimal, currency: str, idempotency_key: str) -> ChargeResult: ...

    def lookup(self, *, idempotency_key: str) -> ChargeResult: ...


class FakeGateway:
    """A gateway whose outcome the token chooses, for development and tests:

    * a token containing ``decline``: declined ("Insufficient funds");
    * ``timeout``: the charge succeeds at the "processor" but the call raises GatewayTimeout (lookup then
      answers succeeded);
    * ``lost``: the call times out and the charge never happened (lookup answers declined);
    * anything else: succeeded.

    Charges are remembered per idempotency key in this process (one charge per key, as a processor does).
    """

    _charges: dict[str, ChargeResult] = {}
    _lock = Lock()

    def charge(self, *, token: str, amount: Decimal, currency: str, idempotency_key: str) -> ChargeResult:
        with self._lock:
            if idempotency_key in self._charges and "timeout" not in token and "lost" not in token:
                return self._charges[idempotency_key]
            if "decline" in token:
                result = ChargeResult(ChargeOutcome.DECLINED, message="Insufficient funds")
            elif "lost" in token:
                self._charges[idempotency_key] = ChargeResult(ChargeOutcome.DECLINED, message="Never arrived")
                raise GatewayTimeout("The gateway did not answer in time.")
            else:
                result = ChargeResult(ChargeOutcome.SUCCEEDED, processor_reference=f"fake_{idempotency_key}")
            first = self._charges.setdefault(idempotency_key, result)
            if "timeout" in token:
                raise GatewayTimeout("The gateway did not answer in time.")
            return first

    def lookup(self, *, idempotency_key: str) -> ChargeResult:
        with self._lock:
            return self._charges.get(idempotency_key, ChargeResult(ChargeOutcome.UNKNOWN))

    @classmethod
    def charges_made(cls) -> dict[str, ChargeResult]:
        return dict(cls._charges)

    @classmethod
    def forget(cls) -> None:
        with cls._lock:
            cls._charges.clear()


def gateway() -> PaymentGateway:
    return import_string(getattr(settings, "PAYMENT_GATEWAY", "payments.gateway.FakeGateway"))()
