"""The error shapes an IPC operation answers with (APPLICATION_ERROR `aws.greengrass#<name>`)."""

from __future__ import annotations

from typing import Any

NS = "aws.greengrass#"


class IpcError(Exception):
    """An error shape sent back as APPLICATION_ERROR (`aws.greengrass#<name>`)."""

    def __init__(self, name: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.model_type = NS + name
        self.body = {"message": message, **fields}


def unauthorized(message: str) -> IpcError:
    return IpcError("UnauthorizedError", message)


def invalid(message: str) -> IpcError:
    return IpcError("InvalidArgumentsError", message)


def not_found(message: str = "Key not found") -> IpcError:
    return IpcError("ResourceNotFoundError", message)
