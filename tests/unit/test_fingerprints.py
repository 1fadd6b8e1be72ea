"""Idempotency-Key plumbing, as pure functions: what makes two requests the same request,
and how a stored outcome is sent again."""

from __future__ import annotations

import hashlib
import re

from wallet_api.core.idempotency import (
    HEADER,
    KEY_PATTERN,
    REPLAYED_HEADER,
    IdempotencyKeyReused,
    Replay,
    StoredResponse,
    client_key,
    fingerprint,
    replay,
    scoped_key,
)

PATH = "/api/v1/wallets/3f0a0c1e-5e55-4b1f-9d0e-1d6b2f0c9a47/operation"


def test_a_fingerprint_is_the_sha256_of_method_path_and_canonical_body() -> None:
    expected = hashlib.sha256(f"POST {PATH}\nDEPOSIT 100".encode()).hexdigest()
    assert fingerprint("POST", PATH, "DEPOSIT 100") == expected
    assert re.fullmatch("[0-9a-f]{64}", expected)


def test_requests_differing_in_method_path_or_body_have_different_fingerprints() -> None:
    base = fingerprint("POST", PATH, "DEPOSIT 100")
    others = {
        fingerprint("PUT", PATH, "DEPOSIT 100"),
        fingerprint("POST", PATH.replace("3f0a", "3f0b"), "DEPOSIT 100"),
        fingerprint("POST", PATH, "DEPOSIT 101"),
        fingerprint("POST", PATH, "WITHDRAW 100"),
        # The separators matter: the path cannot run into the body.
        fingerprint("POST", PATH + "\nDEPOSIT", "100"),
    }
    assert base not in others
    assert len(others) == 5


def test_a_replay_is_the_stored_answer_marked_as_replayed() -> None:
    success = Replay(200, '{"status":"success","balance":10}').response()
    assert success.status_code == 200
    assert success.body == b'{"status":"success","balance":10}'
    assert success.media_type == "application/json"
    assert success.headers[REPLAYED_HEADER] == "true"
    refusal = Replay(400, '{"code":"insufficient_funds"}').response()
    assert refusal.status_code == 400
    assert refusal.media_type == "application/problem+json"
    assert refusal.headers["content-type"] == "application/problem+json"
    assert refusal.headers[REPLAYED_HEADER] == "true"


def test_a_key_is_1_to_255_visible_ascii_characters() -> None:
    assert HEADER == "Idempotency-Key"
    for key in ("a", "order-42", "~" * 255, "!#$%&'*+-.^_`|~"):
        assert re.fullmatch(KEY_PATTERN, key), key
    for key in ("", "a" * 256, "has space", "tab\there", "ключ", "\x7f"):
        assert re.fullmatch(KEY_PATTERN, key) is None, key


def test_an_owner_scopes_a_key_and_the_client_gets_it_back_as_sent() -> None:
    assert scoped_key(None, "order-42") == "order-42"
    assert scoped_key("acme", None) is None
    assert scoped_key(None, None) is None
    scoped = scoped_key("acme", "order-42")
    assert scoped == "acme\torder-42"
    assert scoped != scoped_key("globex", "order-42")
    assert client_key(scoped) == "order-42"
    assert client_key("order-42") == "order-42"
    assert client_key(None) is None
    # A batch item's derived key keeps its suffix.
    assert client_key(f"{scoped} #3") == "order-42 #3"


def test_a_key_replays_its_first_request_and_refuses_another() -> None:
    stored = StoredResponse("f" * 64, 201, '{"wallet_uuid":"x"}')
    assert replay(stored, "f" * 64) == Replay(201, '{"wallet_uuid":"x"}')
    reused = replay(stored, "0" * 64)
    assert isinstance(reused, IdempotencyKeyReused)
    assert (reused.status, reused.code) == (422, "idempotency_key_reused")
    assert reused.detail == IdempotencyKeyReused.example
    assert "different request" in reused.detail
