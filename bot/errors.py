"""Errors a user can cause: the dispatcher turns them into a friendly reply."""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; `str(err)` is shown to them as is."""


class NotAllowed(UserError):
    """The user's roles do not allow this. Nothing was changed."""


class FormInvalid(Exception):
    """A submitted form has problems; shown next to the fields, nothing is stored."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors
