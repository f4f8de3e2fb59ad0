"""Exceptions raised by the Luma provider.

One small hierarchy so callers can catch what they mean: ``LumaAuthError`` for a bad key,
``LumaRateLimitError`` for 429, ``LumaGenerationFailed`` for a video Luma refused to make.
Messages never contain the API key: the hook redacts it before any exception is built.
"""

from __future__ import annotations

try:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:  # Airflow 3.0's Task SDK has them only in airflow.exceptions
    from airflow.exceptions import (  # type: ignore[attr-defined,no-redef]
        AirflowException,
        AirflowFailException,
    )


class LumaError(AirflowException):
    """Base class of every error raised by this provider."""


class LumaValidationError(LumaError, ValueError):
    """Bad user input, caught before any HTTP request is sent.

    :param field: the parameter that was wrong (named in the message too).
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.detail = message
        super().__init__(f"Invalid {field!r}: {message}")


class LumaConfigError(LumaError):
    """The Airflow connection cannot be used (wrong type, missing host or key)."""


class LumaAPIError(LumaError):
    """The gateway answered with an error status.

    :param status: HTTP status code.
    :param message: the gateway's own message (``error.message``, ``message``, ``detail``...).
    :param code: the gateway's error code when it sends one (e.g. ``insufficient_user_quota``).
    :param method: HTTP method of the failed request.
    :param path: path of the failed request (no query string, no secrets).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        method: str = "",
        path: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.code = code
        self.method = method
        self.path = path
        self.retry_after = retry_after
        where = f" on {method} {path}" if method else ""
        code_part = f" [{code}]" if code else ""
        super().__init__(f"Luma gateway returned HTTP {status}{where}{code_part}: {message}")


class LumaBadRequestError(LumaAPIError):
    """400 / 422: the gateway rejected the request body."""


class LumaAuthError(LumaAPIError):
    """401 / 403: bad API key, exhausted quota, or IP not allowed."""


class LumaNotFoundError(LumaAPIError):
    """404 or the new-api ``task_not_exist`` code: unknown generation id or route."""


class LumaRateLimitError(LumaAPIError):
    """429: too many requests; ``retry_after`` holds the gateway's hint in seconds."""


class LumaServerError(LumaAPIError):
    """5xx from the gateway."""


class LumaTransportError(LumaError):
    """No usable HTTP answer: connection refused or reset, timeout, or an unreadable body.

    :param sent: False only when the request provably never reached the gateway
        (connection refused), which is what makes a paid submit safe to retry.
    """

    def __init__(self, message: str, *, sent: bool = True) -> None:
        self.sent = sent
        super().__init__(message)


class LumaResponseTooLargeError(LumaTransportError):
    """A reply above the size cap (decoded); never retried: it would be as large next time."""


class LumaAmbiguousSubmitError(LumaError, AirflowFailException):
    """A submit failed in a way that leaves open whether the gateway took the job.

    Not retried on purpose, not even by Airflow's task retries (it is an ``AirflowFailException``):
    resubmitting could pay for the same video twice. ``LumaGenerateOperator(ambiguous_submit=...)``
    decides otherwise when asked.
    """


class LumaBudgetError(LumaError, AirflowFailException):
    """A budget guard stopped the task before it spent anything (no retry: it would stop again)."""


class LumaNotStartedError(LumaError):
    """An item of a batch that was never started: the batch stopped early after another error."""


class LumaGenerationFailed(LumaError):
    """Luma finished the generation in state ``failed``."""

    def __init__(self, generation_id: str, failure_reason: str | None) -> None:
        self.generation_id = generation_id
        self.failure_reason = failure_reason
        super().__init__(
            f"Luma generation {generation_id} failed: {failure_reason or 'no failure_reason given'}"
        )


class LumaTimeoutError(LumaError):
    """Generations did not finish within the allowed time."""


class LumaDownloadError(LumaError):
    """A video or thumbnail could not be downloaded completely."""
