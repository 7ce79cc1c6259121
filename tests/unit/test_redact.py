"""Provider credentials are redacted from vendor error text (providers/http.py)."""

from __future__ import annotations

import json
import time

import pytest

from quorum.server.errors import ProviderAuthError
from quorum.server.providers.http import REDACTED, credentials, error_for_status, redact
from quorum.server.providers.sse import error_message

KEY = "sk-CANARY-SECRET-0123456789abcdef"
HEADERS = {
    "Authorization": f"Bearer {KEY}",
    "x-goog-api-key": "AIzaSyD-abcdefghijklmnopqrstuvwx",
    "api-key": "azure0123456789abcdef0123456789ab",
    "anthropic-version": "2023-06-01",
    "OpenAI-Organization": "org-public",
}
SECRETS = credentials(HEADERS)


def test_credentials_are_the_values_of_credential_headers() -> None:
    assert set(SECRETS) == {
        f"Bearer {KEY}",
        KEY,
        "AIzaSyD-abcdefghijklmnopqrstuvwx",
        "azure0123456789abcdef0123456789ab",
    }
    assert [len(s) for s in SECRETS] == sorted((len(s) for s in SECRETS), reverse=True)
    assert credentials({"x-api-key": "k"}) == ()  # a placeholder, not a secret


@pytest.mark.parametrize(
    "shown",
    [
        KEY,
        f"Bearer {KEY}",
        f"{KEY[:8]}{'*' * 20}{KEY[-4:]}",  # OpenAI's masked form
        f"{KEY[:6]}...{KEY[-4:]}",
        f"{KEY[:6]}…{KEY[-4:]}",
        f"****{KEY[-4:]}",
        f"{KEY[:7]}****",
        f"{KEY[:4]}{KEY[-4:]}",  # its start and end run together
        KEY[:12],  # cut short
        KEY[5:15],  # a piece
        f"x{KEY[2:]}",
        "AIzaSyD-abcdefghijklmnopqrstuvwx",
        "azure0123456789abcdef0123456789ab",
    ],
)
def test_a_key_shown_whole_or_in_part_is_redacted(shown: str) -> None:
    text = redact(f"Incorrect API key provided: {shown}. See the docs.", SECRETS)
    assert text == f"Incorrect API key provided: {REDACTED}. See the docs.", text


def test_a_key_cut_off_at_the_end_of_the_text_is_redacted() -> None:
    assert redact(f"bad key {KEY[:5]}", SECRETS) == f"bad key {REDACTED}"


@pytest.mark.parametrize(
    "text",
    [
        "The model `gpt-4o` does not exist (invalid_request_error)",
        "anthropic-version: 2023-06-01 is not supported; org-public",
        "sk-... is not a key; neither is ****",
        "Rate limit reached for requests. Please try again in 20ms.",
        "",
    ],
)
def test_other_text_is_kept(text: str) -> None:
    assert redact(text, SECRETS) == text
    assert redact(text, ()) == text


def test_error_for_status_redacts_the_message() -> None:
    error = error_for_status(
        "p", 401, f"Incorrect API key provided: Bearer {KEY}", {}, secrets=SECRETS
    )
    assert isinstance(error, ProviderAuthError)
    assert error.message == f"p: HTTP 401: Incorrect API key provided: {REDACTED}"


def test_error_message_redacts_before_cutting_to_length() -> None:
    # Cut first, a key straddling the 500-character limit would leave its start.
    body = json.dumps({"error": {"message": "y" * 490 + KEY, "type": "invalid"}}).encode()
    message = error_message(body, SECRETS)
    assert KEY[:8] not in message and "sk-CAN" not in message, message
    text = error_message(b"z" * 489 + b" " + KEY.encode(), SECRETS)  # not JSON: cut, redacted
    assert text == "z" * 489 + " " + REDACTED


def test_redaction_is_linear_in_the_text() -> None:
    for text in ("sk-C " * 4000, "a*" * 10_000, f"{KEY[:4]}*" * 4000, "x" * 20_000):
        start = time.perf_counter()
        redact(text, SECRETS)
        assert time.perf_counter() - start < 0.5, text[:10]
