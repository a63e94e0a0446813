"""Bounce and complaint webhooks from SES (via SNS), SendGrid and Postmark, and kept inbound mail.

Each provider's request is authenticated its own way (notifier.bounces.signatures) and then
normalised to the events the bounce receiver produces; a replayed request changes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from api.deps import AdminCaller, SettingsDep, StoreDep
from api.problems import COMMON_PROBLEMS, ApiProblem, problem_doc
from api.responses import OrjsonResponse
from api.routes.suppressions import SuppressionsDep
from notifier.bounces.csvfile import iso
from notifier.bounces.events import FeedbackEvent
from notifier.bounces.handling import FeedbackProcessor
from notifier.bounces.providers import postmark_events, sendgrid_events, ses_events
from notifier.bounces.signatures import (
    SnsCertificates,
    WebhookRejected,
    check_basic_auth,
    verify_sendgrid,
)
from notifier.storage.suppressions import UnclassifiedMail

__all__ = ["router"]

router = APIRouter(tags=["bounces"])

_WEBHOOK_DOCS = {
    **problem_doc(401, "Missing or wrong credentials or signature."),
    **problem_doc(403, "A signature or topic that does not check out."),
    **problem_doc(404, "This provider's webhook is not configured."),
    **problem_doc(422, "A body that is not the provider's JSON."),
}


@functools.cache
def sns_certificates(pattern: str) -> SnsCertificates:
    """One certificate cache per allowlist pattern, for the life of the process."""
    return SnsCertificates(pattern)


async def feedback_processor(
    store: StoreDep, suppressions: SuppressionsDep, settings: SettingsDep
) -> FeedbackProcessor:
    return FeedbackProcessor(notifications=store, suppressions=suppressions, settings=settings)


ProcessorDep = Annotated[FeedbackProcessor, Depends(feedback_processor)]


def _rejected(exc: WebhookRejected, *, basic: bool = False) -> ApiProblem:
    headers = {"WWW-Authenticate": 'Basic realm="notifier-webhooks"'} if basic else None
    return ApiProblem(exc.status, str(exc), slug="webhook-rejected", headers=headers)


def _not_configured(provider: str, setting: str) -> ApiProblem:
    return ApiProblem(
        404, f"The {provider} webhook is not configured (set {setting}).", slug="not-found"
    )


async def _json(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise ApiProblem.invalid("body", "not valid JSON") from None


async def _apply(processor: FeedbackProcessor, events: Sequence[FeedbackEvent]) -> Response:
    applied = duplicates = 0
    for event in events:
        result = await processor.apply(event)
        if result.outcome == "duplicate":
            duplicates += 1
        else:
            applied += 1
    return OrjsonResponse({"applied": applied, "duplicates": duplicates})


@router.post(
    "/api/v1/webhooks/inbound/ses",
    summary="Amazon SES bounce and complaint notifications, delivered by SNS",
    responses={
        **_WEBHOOK_DOCS,
        **problem_doc(502, "Confirming the SNS subscription failed."),
        **COMMON_PROBLEMS,
    },
)
async def ses_webhook(request: Request, settings: SettingsDep, processor: ProcessorDep) -> Response:
    """Accepts SNS ``SubscriptionConfirmation`` (confirmed by visiting its SubscribeURL) and
    ``Notification`` messages of the topics in SES_SNS_TOPIC_ARNS, signature checked."""
    if not settings.ses_sns_topic_arns:
        raise _not_configured("SES", "SES_SNS_TOPIC_ARNS")
    message = await _json(request)
    if not isinstance(message, dict):
        raise ApiProblem.invalid("body", "an SNS message is a JSON object")
    if message.get("TopicArn") not in settings.ses_sns_topic_arns:
        raise ApiProblem(
            403, "The SNS topic is not in SES_SNS_TOPIC_ARNS.", slug="webhook-rejected"
        )
    certificates = sns_certificates(settings.sns_cert_url_pattern)
    try:
        await certificates.verify(message)
    except WebhookRejected as exc:
        raise _rejected(exc) from exc
    kind = message.get("Type")
    if kind == "SubscriptionConfirmation":
        await _confirm_subscription(message)
        return OrjsonResponse({"confirmed": True})
    if kind != "Notification":
        return OrjsonResponse({"applied": 0, "duplicates": 0})
    try:
        notification = orjson.loads(str(message.get("Message", "")))
    except orjson.JSONDecodeError:
        raise ApiProblem.invalid("Message", "the SNS Message is not SES's JSON") from None
    if not isinstance(notification, dict):
        raise ApiProblem.invalid("Message", "the SNS Message is not SES's JSON")
    return await _apply(processor, ses_events(notification))


async def _confirm_subscription(message: dict[str, Any]) -> None:
    # Visit SubscribeURL only on the host the (allowlisted, verified) certificate came from.
    subscribe = urlsplit(str(message.get("SubscribeURL", "")))
    certificate = urlsplit(str(message.get("SigningCertURL", "")))
    if (subscribe.scheme, subscribe.netloc) != (certificate.scheme, certificate.netloc):
        raise ApiProblem(403, "SubscribeURL is not on the SNS host.", slug="webhook-rejected")
    try:
        async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
            response = await client.get(subscribe.geturl())
            response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ApiProblem(
            502, f"Confirming the SNS subscription failed: {exc}", slug="bad-gateway"
        ) from exc


@router.post(
    "/api/v1/webhooks/inbound/sendgrid",
    summary="SendGrid Event Webhook (signed)",
    responses={**_WEBHOOK_DOCS, **COMMON_PROBLEMS},
)
async def sendgrid_webhook(
    request: Request, settings: SettingsDep, processor: ProcessorDep
) -> Response:
    """Bounce, blocked, deferred and spamreport events; the ECDSA signature is checked with
    SENDGRID_WEBHOOK_PUBLIC_KEY."""
    if not settings.sendgrid_webhook_public_key:
        raise _not_configured("SendGrid", "SENDGRID_WEBHOOK_PUBLIC_KEY")
    body = await request.body()
    try:
        verify_sendgrid(
            public_key=settings.sendgrid_webhook_public_key,
            signature=request.headers.get("X-Twilio-Email-Event-Webhook-Signature", ""),
            timestamp=request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp", ""),
            body=body,
        )
    except WebhookRejected as exc:
        raise _rejected(exc) from exc
    try:
        batch = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiProblem.invalid("body", "not valid JSON") from None
    if not isinstance(batch, list) or not all(isinstance(item, dict) for item in batch):
        raise ApiProblem.invalid("body", "SendGrid posts a JSON array of event objects")
    return await _apply(processor, sendgrid_events(batch))


@router.post(
    "/api/v1/webhooks/inbound/postmark",
    summary="Postmark bounce and spam-complaint webhook (basic auth)",
    responses={**_WEBHOOK_DOCS, **COMMON_PROBLEMS},
)
async def postmark_webhook(
    request: Request, settings: SettingsDep, processor: ProcessorDep
) -> Response:
    if settings.postmark_webhook_username is None or settings.postmark_webhook_password is None:
        raise _not_configured("Postmark", "POSTMARK_WEBHOOK_USERNAME/PASSWORD")
    try:
        check_basic_auth(
            request.headers.get("authorization"),
            username=settings.postmark_webhook_username,
            password=settings.postmark_webhook_password.get_secret_value(),
        )
    except WebhookRejected as exc:
        raise _rejected(exc, basic=True) from exc
    payload = await _json(request)
    if not isinstance(payload, dict):
        raise ApiProblem.invalid("body", "Postmark posts a JSON object")
    return await _apply(processor, postmark_events(payload))


def _kept_json(mail: UnclassifiedMail, *, raw: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": mail.id,
        "received_at": iso(mail.received_at),
        "mail_from": mail.mail_from,
        "rcpt_to": list(mail.rcpt_to),
        "problem": mail.problem,
        "size": len(mail.raw),
    }
    if raw:
        data["raw"] = mail.raw
    return data


@router.get(
    "/api/v1/bounces/unclassified",
    summary="Inbound mail the bounce receiver kept without applying it, newest first",
    responses=COMMON_PROBLEMS,
)
async def list_unclassified(
    caller: AdminCaller,
    suppressions: SuppressionsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    kept = await suppressions.unclassified(limit=limit, offset=offset)
    return OrjsonResponse({"items": [_kept_json(mail, raw=False) for mail in kept]})


@router.get(
    "/api/v1/bounces/unclassified/{mail_id}",
    summary="One kept inbound message, raw",
    responses={**problem_doc(404, "No kept message with that id."), **COMMON_PROBLEMS},
)
async def get_unclassified(
    mail_id: str, caller: AdminCaller, suppressions: SuppressionsDep
) -> Response:
    mail = await suppressions.unclassified_one(mail_id)
    if mail is None:
        raise ApiProblem(404, f"No kept inbound message {mail_id!r}.", slug="not-found")
    return OrjsonResponse(_kept_json(mail, raw=True))
