"""Errors of the forms service.

::

    ChatmeshError (services.runtime.errors)
    ├── InvalidArgument
    │   ├── InvalidValues            Submit's values break the form (every violation in details)
    │   ├── InvalidDefinition        CreateForm/UpdateForm fields break a rule the contract states
    │   └── BadPageToken
    ├── Unauthenticated
    │   └── SignInRequired           a private form, or an owner-only call, without a token
    ├── NotFound
    │   ├── FormNotFound
    │   ├── SubmissionNotFound
    │   └── ConsumerNotFound
    ├── PermissionDenied
    │   └── NotTheOwner              submissions, dead letters, redrive, updates of others' forms
    ├── AlreadyExists
    │   └── FormNameTaken
    ├── FailedPrecondition
    │   └── VersionConflict          UpdateForm against a version that is not the latest
    ├── ResourceExhausted
    │   └── SubmittingTooFast        per user, per client address, per form
    └── Unavailable                  JetStream or CQL did not answer (nothing was accepted)
"""

from __future__ import annotations

from collections.abc import Sequence

from services.runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)


class InvalidValues(InvalidArgument):
    """Submitted values break the form; ``violations`` lists every one, the message names the first."""

    def __init__(self, violations: Sequence[tuple[str, str]]) -> None:
        field, problem = violations[0]
        more = len(violations) - 1
        suffix = f" (and {more} more: see the error details)" if more else ""
        super().__init__(field, problem + suffix, violations=violations)


class InvalidDefinition(InvalidArgument):
    """A form definition breaks a rule; ``violations`` lists every one."""

    def __init__(self, violations: Sequence[tuple[str, str]]) -> None:
        field, problem = violations[0]
        more = len(violations) - 1
        suffix = f" (and {more} more: see the error details)" if more else ""
        super().__init__(field, problem + suffix, violations=violations)


class BadPageToken(InvalidArgument):
    """The page token was not issued by this service."""

    def __init__(self) -> None:
        super().__init__("page.page_token", "not a page token issued by this service")


class SignInRequired(Unauthenticated):
    """The call needs an access token here (a private form, an owner-only call)."""

    def __init__(self, what: str = "this form is not public") -> None:
        super().__init__(f"{what}: send `authorization: Bearer <token>`")


class FormNotFound(NotFound):
    """No such form."""

    def __init__(self, form_id: str) -> None:
        super().__init__(f"form_id: no form {form_id}")


class SubmissionNotFound(NotFound):
    """No such submission."""

    def __init__(self, submission_id: str) -> None:
        super().__init__(f"submission_id: no submission {submission_id}")


class ConsumerNotFound(NotFound):
    """No consumer of that name is registered."""

    def __init__(self, field: str, name: str) -> None:
        super().__init__(f"{field}: no consumer named {name!r}")


class NotTheOwner(PermissionDenied):
    """Only a form's owner may do this."""

    def __init__(self) -> None:
        super().__init__("form_id: only the form's owner may do this")


class FormNameTaken(AlreadyExists):
    """The caller already has a form of that name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"name: you already have a form named {name!r}")


class VersionConflict(FailedPrecondition):
    """UpdateForm was made against an older version."""

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(f"expected_version: the form is at version {current}, not {expected}; read it again and retry")


class SubmittingTooFast(ResourceExhausted):
    """A submit rate limit is used up."""

    def __init__(self, who: str, retry_after_s: float) -> None:
        super().__init__(f"too many submissions {who}; retry later", retry_after_s=retry_after_s)
