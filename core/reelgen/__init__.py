"""reelgen: turn still images into short videos through any provider, from one contract.

Public names (plugin authors and scripts rely on these)::

    from reelgen import hookimpl, VideoProvider, VideoRequest, Job, JobStatus, VideoResult
    from reelgen import generate, agenerate, enqueue
    from reelgen import ReelgenError, InvalidRequest, ...   # the whole error tree (reelgen.errors)

Heavy modules load on first use, so ``reelgen --help`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "hookimpl": "reelgen.hookspecs",
    "hookspec": "reelgen.hookspecs",
    "VideoProvider": "reelgen.provider",
    "Capabilities": "reelgen.provider",
    "ModelSpec": "reelgen.provider",
    "ImageLimits": "reelgen.provider",
    "ProviderSettings": "reelgen.provider",
    "VideoRequest": "reelgen.models",
    "Job": "reelgen.models",
    "JobStatus": "reelgen.models",
    "VideoResult": "reelgen.models",
    "Video": "reelgen.models",
    "CostEstimate": "reelgen.models",
    "ReelgenError": "reelgen.errors",
    "UsageError": "reelgen.errors",
    "InvalidRequest": "reelgen.errors",
    "Unsupported": "reelgen.errors",
    "OutputExists": "reelgen.errors",
    "ManifestInvalid": "reelgen.errors",
    "ContentPolicyError": "reelgen.errors",
    "BudgetExceeded": "reelgen.errors",
    "MissingCredentials": "reelgen.errors",
    "AuthenticationError": "reelgen.errors",
    "AccountError": "reelgen.errors",
    "ConfigError": "reelgen.errors",
    "UnknownProvider": "reelgen.errors",
    "JobNotFound": "reelgen.errors",
    "DamagedJob": "reelgen.errors",
    "JobBusy": "reelgen.errors",
    "WebhookInvalid": "reelgen.errors",
    "OperationalError": "reelgen.errors",
    "RateLimited": "reelgen.errors",
    "ConcurrencyLimited": "reelgen.errors",
    "ProviderUnavailable": "reelgen.errors",
    "ProviderTimeout": "reelgen.errors",
    "TokenExpired": "reelgen.errors",
    "JobFailed": "reelgen.errors",
    "WaitTimeout": "reelgen.errors",
    "DownloadError": "reelgen.errors",
    "UploadError": "reelgen.errors",
    "generate": "reelgen.library",
    "agenerate": "reelgen.library",
    "enqueue": "reelgen.library",
    "estimate": "reelgen.library",
    "cancel": "reelgen.library",
    "Engine": "reelgen.engine",
}

# a literal list: type checkers read it to know what `from reelgen import X` may take
__all__ = [
    "AccountError",
    "AuthenticationError",
    "BudgetExceeded",
    "Capabilities",
    "ConcurrencyLimited",
    "ConfigError",
    "ContentPolicyError",
    "CostEstimate",
    "DamagedJob",
    "DownloadError",
    "Engine",
    "ImageLimits",
    "InvalidRequest",
    "Job",
    "JobBusy",
    "JobFailed",
    "JobNotFound",
    "JobStatus",
    "ManifestInvalid",
    "MissingCredentials",
    "ModelSpec",
    "OperationalError",
    "OutputExists",
    "ProviderSettings",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimited",
    "ReelgenError",
    "TokenExpired",
    "UnknownProvider",
    "Unsupported",
    "UploadError",
    "UsageError",
    "Video",
    "VideoProvider",
    "VideoRequest",
    "VideoResult",
    "WaitTimeout",
    "WebhookInvalid",
    "__version__",
    "agenerate",
    "cancel",
    "enqueue",
    "estimate",
    "generate",
    "hookimpl",
    "hookspec",
]

if TYPE_CHECKING:
    from .engine import Engine
    from .errors import (
        AccountError,
        AuthenticationError,
        BudgetExceeded,
        ConcurrencyLimited,
        ConfigError,
        ContentPolicyError,
        DamagedJob,
        DownloadError,
        InvalidRequest,
        JobBusy,
        JobFailed,
        JobNotFound,
        ManifestInvalid,
        MissingCredentials,
        OperationalError,
        OutputExists,
        ProviderTimeout,
        ProviderUnavailable,
        RateLimited,
        ReelgenError,
        TokenExpired,
        UnknownProvider,
        Unsupported,
        UploadError,
        UsageError,
        WaitTimeout,
        WebhookInvalid,
    )
    from .hookspecs import hookimpl, hookspec
    from .library import agenerate, cancel, enqueue, estimate, generate
    from .models import CostEstimate, Job, JobStatus, Video, VideoRequest, VideoResult
    from .provider import Capabilities, ImageLimits, ModelSpec, ProviderSettings, VideoProvider


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'reelgen' has no attribute {name!r}")
