"""Entra ID (Azure AD) error results from MSAL, mapped to one line and a hint for the user."""

from __future__ import annotations

import re
from typing import Any

# Conditional Access refusing the device-code flow (Microsoft's "Block device code flow" policy,
# "require compliant device"): the browser-based sign-ins still work.
BLOCKED_HINT = (
    'Conditional Access blocks this sign-in (often: device code flow not allowed): run "{login} --browser", '
    'or "{login} --paste" on a machine without a browser; if that is blocked too, ask your admin'
)

# What to tell the user for the Entra errors people actually meet.
AADSTS_HINTS = {
    9002331: "this app registration accepts personal accounts only: set "
    "OUTLOOK_AUTHORITY=https://login.microsoftonline.com/consumers",
    65001: "consent is missing: an administrator must grant IMAP.AccessAsUser.All and SMTP.Send "
    "(Entra admin center > App registrations > API permissions > Grant admin consent)",
    7000218: 'turn on "Allow public client flows" in the app registration (Authentication page)',
    70002: 'turn on "Allow public client flows" in the app registration (Authentication page)',
    700082: 'the sign-in expired after 90 days without use: run "{login}" again',
    50173: 'the sign-in was revoked (password change?): run "{login}" again',
    70043: 'a sign-in frequency policy ended the session: run "{login}" again',
    53003: BLOCKED_HINT,
    530033: BLOCKED_HINT,
    50199: BLOCKED_HINT,
    700016: "OUTLOOK_CLIENT_ID is not an application in this directory: check it and OUTLOOK_AUTHORITY",
    90002: "the tenant in OUTLOOK_AUTHORITY does not exist: check it",
}
SIGN_IN_AGAIN = {700082, 50173, 70043}


def aadsts_code(result: dict[str, Any]) -> int | None:
    """The first AADSTS error code of an MSAL error result, from ``error_codes`` or the text."""
    codes = result.get("error_codes")
    if isinstance(codes, list) and codes and isinstance(codes[0], int):
        return codes[0]
    match = re.search(r"AADSTS(\d+)", str(result.get("error_description", "")))
    return int(match.group(1)) if match else None


def describe_error(result: dict[str, Any], login: str = "mailbot login") -> tuple[str, str | None]:
    """One-line description and hint for an MSAL error result; ``login`` is the command to suggest."""
    code = aadsts_code(result)
    first_line = str(result.get("error_description") or result.get("error") or "unknown error")
    first_line = first_line.strip().splitlines()[0] if first_line.strip() else "unknown error"
    hint = AADSTS_HINTS.get(code) if code is not None else None
    if hint is None and "flow" in first_line.lower() and "block" in first_line.lower():
        hint = BLOCKED_HINT  # "authentication flow blocked" answers without a known code
    return first_line, hint.replace("{login}", login) if hint else None
