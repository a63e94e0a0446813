"""The exception tree: drawn in errors.py's docstring; delivery errors keep their data in Celery."""

from __future__ import annotations

import inspect

import pytest
from celery import Celery

import notifier.errors as errors
from notifier.errors import (
    DeliveryError,
    NotificationFailed,
    NotifierError,
    PermanentDeliveryError,
    TransientDeliveryError,
)


def _exception_classes() -> list[type[BaseException]]:
    return [
        value
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    ]


def test_every_exception_class_is_drawn_in_the_docstring() -> None:
    doc = errors.__doc__ or ""
    missing = [cls.__name__ for cls in _exception_classes() if cls.__name__ not in doc]
    assert missing == []


def test_every_exception_class_is_exported_and_under_the_root() -> None:
    for cls in _exception_classes():
        assert cls.__name__ in errors.__all__
        assert issubclass(cls, NotifierError)


@pytest.mark.parametrize(
    "cls", [DeliveryError, TransientDeliveryError, PermanentDeliveryError, NotificationFailed]
)
def test_delivery_errors_keep_code_and_recipient_in_args(cls: type[DeliveryError]) -> None:
    error = cls("550 5.1.1 no such user", code=550, recipient="bob@example.org")
    assert str(error) == "550 5.1.1 no such user"
    assert error.args == ("550 5.1.1 no such user", 550, "bob@example.org")
    rebuilt = cls(*error.args)
    assert (rebuilt.code, rebuilt.recipient, str(rebuilt)) == (550, "bob@example.org", str(error))


def test_notification_failed_round_trips_through_celerys_json_result_format() -> None:
    # What the Redis result backend stores for a failed task and how AsyncResult rebuilds it.
    app = Celery("errors_test", backend="cache+memory://")
    app.conf.result_serializer = "json"
    backend = app.backend
    error = NotificationFailed("550 5.1.1 no such user", code=550, recipient="bob@example.org")
    decoded = backend.decode(backend.encode(backend.prepare_exception(error)))
    assert decoded == {
        "exc_type": "NotificationFailed",
        "exc_message": ["550 5.1.1 no such user", 550, "bob@example.org"],
        "exc_module": "notifier.errors",
    }
    rebuilt = backend.exception_to_python(decoded)
    assert isinstance(rebuilt, NotificationFailed)
    assert rebuilt.code == 550
    assert rebuilt.recipient == "bob@example.org"
    assert str(rebuilt) == "550 5.1.1 no such user"


def test_describe_error_leads_with_the_field() -> None:
    assert errors.describe_error(errors.InvalidNotification("bad", field="to")) == "to: bad"
    assert errors.describe_error(errors.InvalidNotification("to: bad", field="to")) == "to: bad"
    assert errors.describe_error(errors.TemplateNotFound("no such template")) == (
        "no such template"
    )
