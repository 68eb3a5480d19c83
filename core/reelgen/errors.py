"""Every error reelgen raises, in one tree, each class saying what can be done about it.

``retry``: trying the same call again may help. ``failover``: another provider of a route may
succeed where this one failed (never when the job may already have been accepted:
``maybe_accepted``). Marked per class below; a provider may override ``retryable`` per error.

::

    class                             retry  failover  meaning
    ReelgenError                        -       -      base
    ├── UsageError                      -       -      the caller must change something
    │   ├── InvalidRequest              -       -      bad input (image, prompt, cfg_scale, ...)
    │   │   ├── Unsupported             -       yes    this provider cannot serve it (model,
    │   │   │                                          mode, duration, input kind, option)
    │   │   ├── OutputExists            -       -      the output file exists, no --force
    │   │   └── ManifestInvalid         -       -      bad batch lines; nothing was sent
    │   ├── ContentPolicyError          -       -      the provider refused the content
    │   ├── BudgetExceeded              -       yes    the estimate is over the allowed cost
    │   ├── MissingCredentials          -       yes    no key for the provider
    │   ├── AuthenticationError         -       yes    the key was rejected
    │   ├── AccountError                -       yes    arrears, pack used up, permission, IP
    │   ├── ConfigError                 -       -      a config file or setting is wrong
    │   ├── UnknownProvider             -       -      no plugin registered that provider name
    │   ├── JobNotFound                 -       -      no such job in the job log
    │   ├── DamagedJob                  -       -      its job-log row cannot be read back
    │   ├── JobBusy                     -       -      another process works on that job now
    │   └── WebhookInvalid              -       -      a callback failed its signature check
    │                                                  (unsigned, stale, forged): refused
    └── OperationalError               yes     yes     something went wrong on the way
        ├── RateLimited                yes     yes     slow down (``retry_after`` if given)
        │   └── ConcurrencyLimited     yes     yes     too many jobs running for the account
        ├── ProviderUnavailable        yes     yes     5xx, maintenance, garbage replies
        ├── ProviderTimeout            yes     yes     no answer in time, cut connections
        ├── TokenExpired               yes     yes     rejected even after re-signing once
        ├── JobFailed                   -      yes     the provider ran the job and it failed
        ├── WaitTimeout                 -       -      still running at the deadline (paid)
        └── DownloadError              yes      -      the (paid) result could not be saved
            └── UploadError            yes      -      ... to object storage (s3://); the
                                                       verified video is kept on disk

Providers translate their wire errors onto this tree in exactly one place. Errors carry
``provider``, ``job_id``, ``retry_after``, ``maybe_accepted`` (the provider may have acted on a
request whose reply was lost: look before you submit again) and ``attempts`` (the providers a
route tried before).
"""

from __future__ import annotations

import copy
from typing import ClassVar, TypeVar

E = TypeVar("E", bound="ReelgenError")


class ReelgenError(Exception):
    """Base of every reelgen error. ``str(err)`` is one line: what, why, how to fix."""

    retryable: bool = False
    failover: ClassVar[bool] = False
    """Whether another provider of a route may succeed where this one failed."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        job_id: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        maybe_accepted: bool = False,
        code: int | str | None = None,
        attempts: list[dict[str, object]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.job_id = job_id
        if retryable is not None:
            self.retryable = retryable
        self.retry_after = retry_after
        self.maybe_accepted = maybe_accepted
        self.code = code
        self.attempts = attempts
        """Providers a route tried before this error (for --json and the job log)."""

    @property
    def may_fail_over(self) -> bool:
        """Another provider may be tried: this kind of error allows it, and nothing may have
        been accepted (and charged) by this one."""
        return self.failover and not self.maybe_accepted

    def __str__(self) -> str:
        return self.message

    def with_hint(self: E, hint: str, *, prefix: str = "") -> E:
        """A copy of this error whose message ends with ``hint`` (and starts with ``prefix``),
        every field kept."""
        err = copy.copy(self)
        err.message = f"{prefix}{self.message}{hint}"
        err.args = (err.message,)
        return err


class UsageError(ReelgenError):
    """The caller must change something; retrying the same call cannot help."""

    retryable = False


class InvalidRequest(UsageError):
    """The request is invalid for the provider (refused locally or by the provider)."""


class Unsupported(InvalidRequest):
    """The provider cannot serve this request (model, mode, duration, input kind, option),
    though another provider may: a router skips it rather than stopping."""

    failover = True


class OutputExists(InvalidRequest):
    """The output file already exists and overwriting it was not asked for."""


class ManifestInvalid(InvalidRequest):
    """One or more manifest lines are bad; nothing was submitted."""


class ContentPolicyError(UsageError):
    """The provider refused the prompt or image on policy or safety grounds."""


class BudgetExceeded(UsageError):
    """The estimated cost is above the allowed maximum."""

    failover = True


class MissingCredentials(UsageError):
    """No credentials are configured for the provider."""

    failover = True


class AuthenticationError(UsageError):
    """The provider rejected the credentials."""

    failover = True


class AccountError(UsageError):
    """The account cannot run this (arrears, resource pack used up, permission, IP policy)."""

    failover = True


class ConfigError(UsageError):
    """A configuration file or setting is invalid."""


class UnknownProvider(UsageError):
    """No installed plugin registered a provider by that name."""


class JobNotFound(UsageError):
    """The job log has no job with that id."""


class DamagedJob(UsageError):
    """The job's row in the job log cannot be read back; other jobs are unaffected."""


class JobBusy(UsageError):
    """Another live process is submitting or saving that job; wait for it to finish."""


class WebhookInvalid(UsageError):
    """A callback request is unsigned, outside the timestamp tolerance, or its signature does
    not match the body and the webhook secret."""


class OperationalError(ReelgenError):
    """Something failed on the way; trying again may help."""

    retryable = True
    failover = True


class RateLimited(OperationalError):
    """The provider asked us to slow down."""


class ConcurrencyLimited(RateLimited):
    """The account runs as many jobs as it may; wait for one to finish (a batch lowers its
    in-flight count instead of failing jobs)."""


class ProviderUnavailable(OperationalError):
    """The provider is down, in maintenance or answered something unreadable."""


class ProviderTimeout(OperationalError):
    """The provider did not answer in time, or the connection broke."""


class TokenExpired(OperationalError):
    """The provider rejected the token as expired or not yet valid; re-sign and retry once."""


class JobFailed(OperationalError):
    """The provider ran the job and it failed (the message says why)."""

    retryable = False


class WaitTimeout(OperationalError):
    """The job did not reach a final state before the deadline; it may still finish."""

    retryable = False
    failover = False


class DownloadError(OperationalError):
    """The finished video could not be downloaded or did not verify."""

    failover = False


class UploadError(DownloadError):
    """The verified video could not be put in object storage (``s3://``); it is kept on disk
    and the message says where, and how to upload it later."""


StatusEntry = tuple[type[ReelgenError], str, bool]
"""How a provider reads an HTTP error status: the error, what to tell the user, retryable."""


def http_statuses(vendor: str, keys_hint: str, credential: str = "key") -> dict[int, StatusEntry]:
    """What the usual error statuses of a vendor's JSON API mean, worded for ``vendor``
    (``keys_hint`` says how to fix a refused ``credential``). A provider's ``wire_errors``
    starts from this and states what its API says differently."""
    return {
        400: (InvalidRequest, f"{vendor} refused the request", False),
        401: (AuthenticationError, f"{vendor} rejected the {credential}; {keys_hint}", False),
        402: (AccountError, f"the {vendor} account cannot pay for this", False),
        403: (
            AuthenticationError,
            f"{vendor} refused access with this {credential}; {keys_hint}",
            False,
        ),
        404: (InvalidRequest, f"{vendor} does not know this model or request", False),
        408: (ProviderTimeout, f"{vendor} timed out waiting for the request", True),
        413: (
            InvalidRequest,
            f"the request is too large for {vendor}; give the image as an https URL instead "
            "of a file",
            False,
        ),
        422: (InvalidRequest, f"{vendor} refused the input", False),
        429: (RateLimited, f"{vendor} asks to slow down; backing off", True),
        500: (ProviderUnavailable, f"{vendor} server error", True),
        502: (ProviderUnavailable, f"{vendor}'s gateway failed", True),
        503: (ProviderUnavailable, f"{vendor} is unavailable", True),
        504: (ProviderUnavailable, f"{vendor}'s gateway timed out", True),
    }
