"""Business functions of the user-onboarding workflow (the README demo).

Plain Python: the executor calls them with a StepContext and sends back what they return.
They keep their "database" in memory, so the demo needs no external services.
"""

from __future__ import annotations

import asyncio
import itertools

import magicflow

_next_user_id = itertools.count(1001)
_accounts: dict[int, str] = {}


class ValidationError(Exception):
    """Listed in the workflow's non_retryable_errors: retrying cannot fix bad data."""


@magicflow.function
def validate_user(ctx: magicflow.StepContext) -> dict[str, str]:
    email = str(ctx.input["email"]).strip()
    if "@" not in email or email.startswith("@") or email.endswith("@"):
        raise magicflow.NonRetryableError(f"not an email address: {email!r}")
    return {"email": email.lower()}


@magicflow.function
async def create_account(ctx: magicflow.StepContext) -> dict[str, object]:
    await asyncio.sleep(0.05)  # a call to the accounts service
    email = ctx.input["email"]
    if email in _accounts.values():
        raise ValidationError(f"{email} already has an account")
    user_id = next(_next_user_id)
    _accounts[user_id] = email
    return {"user_id": user_id, "plan": ctx.input["plan"]}


@magicflow.function
def delete_account(ctx: magicflow.StepContext) -> dict[str, object]:
    """Compensation: undo create_account if a later step fails the execution."""
    user_id = ctx.input["user_id"]
    return {"deleted": _accounts.pop(user_id, None) is not None, "user_id": user_id}


@magicflow.function
async def send_welcome_email(ctx: magicflow.StepContext) -> dict[str, object]:
    await asyncio.sleep(0.02)  # a call to the mail service
    return {"sent_to": ctx.input["email"], "subject": ctx.input["subject"]}
