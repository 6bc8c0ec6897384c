"""Expected failures of the fleet commands, told in one line instead of a traceback."""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
)

# What to set when AWS cannot tell who we are.
CREDENTIALS_HINT = (
    "set AWS_PROFILE (e.g. make stack AWS_PROFILE=prod), or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, or run `aws sso login` for an SSO profile"
)

# Error codes AWS answers when the credentials themselves are wrong or stale.
REJECTED_CREDENTIAL_CODES = {
    "AuthFailure",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "RequestExpired",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
}


class FleetError(Exception):
    """A failure the operator can act on; the message says what happened and what to do."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def explain(exc: BotoCoreError | ClientError) -> FleetError:
    """Turn a botocore exception into a one-line :class:`FleetError`."""
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return FleetError(f"no usable AWS credentials: {CREDENTIALS_HINT}")
    if isinstance(exc, ProfileNotFound):
        return FleetError(f"{exc}: set AWS_PROFILE to a profile in ~/.aws/config, or unset it")
    if isinstance(exc, (SSOError, TokenRetrievalError, CredentialRetrievalError)):
        return FleetError(f"AWS credentials could not be loaded ({exc}): {CREDENTIALS_HINT}")
    if isinstance(exc, NoRegionError):
        return FleetError("no AWS region: set AWS_REGION (e.g. make status AWS_REGION=us-east-1)")
    if isinstance(exc, EndpointConnectionError):
        return FleetError(f"cannot reach AWS: {exc}")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Unknown"), error.get("Message", "")
        if code in REJECTED_CREDENTIAL_CODES:
            return FleetError(f"AWS rejected the credentials ({code}: {message}): {CREDENTIALS_HINT}")
        operation = getattr(exc, "operation_name", "the call")
        return FleetError(f"AWS refused {operation}: {code}: {message}")
    return FleetError(f"AWS call failed: {exc}")


def error_code(exc: ClientError) -> str:
    """The error code AWS answered with, e.g. ``ValidationError``."""
    return exc.response.get("Error", {}).get("Code", "")


def error_message(exc: ClientError) -> str:
    """The message AWS answered with."""
    return exc.response.get("Error", {}).get("Message", "")
