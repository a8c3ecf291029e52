"""SCRAM against the RFC 5802 §5 and RFC 7677 §3 test vectors, channel binding
and the unknown-user path."""

from __future__ import annotations

import base64

import pytest

from appliances.xmpp.scram import (
    Credential,
    SaslFailure,
    ScramServer,
    check_plain,
    derive,
)


def server(mechanism: str, credential: Credential | None, nonce: str, **kwargs: object) -> ScramServer:
    options: dict[str, object] = {"cb_data": None, "plus_offered": False}
    options.update(kwargs)
    return ScramServer(
        mechanism,
        lookup=lambda user, hash_name: credential if user == "user" else None,
        secret=b"s" * 32,
        nonce=nonce,
        **options,  # type: ignore[arg-type]
    )


def test_rfc5802_sha1_vector() -> None:
    salt = base64.b64decode("QSXCR+Q6sek8bf92")
    scram = server("SCRAM-SHA-1", derive("pencil", salt, 4096, "sha1"), "3rfcNHYJY1ZVvWVs7j")
    first = scram.first(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL")
    assert first == b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
    final = scram.final(b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")
    assert final == b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="


def test_rfc7677_sha256_vector() -> None:
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    scram = server("SCRAM-SHA-256", derive("pencil", salt, 4096, "sha256"), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    first = scram.first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert first == (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    final = scram.final(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_wrong_proof_and_unknown_user_fail_the_same_way() -> None:
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    credential = derive("pencil", salt, 4096, "sha256")
    outcomes = []
    for user in ("user", "nobody"):
        scram = server("SCRAM-SHA-256", credential, "N")
        first = scram.first(f"n,,n={user},r=abc".encode()).decode()
        assert first.startswith("r=abcN,s=") and first.endswith(",i=4096")
        with pytest.raises(SaslFailure) as caught:
            scram.final(b"c=biws,r=abcN,p=" + base64.b64encode(b"x" * 32))
        outcomes.append(caught.value.condition)
    assert outcomes == ["not-authorized", "not-authorized"]
    # the unknown user's salt is stable (no oracle by asking twice)
    again = [server("SCRAM-SHA-256", credential, "N").first(b"n,,n=nobody,r=abc") for _ in range(2)]
    assert again[0] == again[1]


def test_plus_binds_to_the_certificate_and_refuses_downgrade() -> None:
    salt = b"0123456789abcdef"
    credential = derive("pencil", salt, 4096, "sha256")
    cb = b"\x01" * 32
    with pytest.raises(SaslFailure) as caught:
        server("SCRAM-SHA-256", credential, "N", cb_data=cb, plus_offered=True).first(b"y,,n=user,r=a")
    assert caught.value.condition == "not-authorized"
    # without -PLUS offered, 'y' is fine
    server("SCRAM-SHA-256", credential, "N").first(b"y,,n=user,r=a")
    plus = server("SCRAM-SHA-256-PLUS", credential, "N", cb_data=cb, plus_offered=True)
    plus.first(b"p=tls-server-end-point,,n=user,r=a")
    wrong = base64.b64encode(b"p=tls-server-end-point,," + b"\x02" * 32).decode()
    with pytest.raises(SaslFailure):
        plus.final(f"c={wrong},r=aN,p=AAAA".encode())
    with pytest.raises(SaslFailure) as caught:
        server("SCRAM-SHA-256-PLUS", credential, "N", cb_data=None).first(b"n,,n=user,r=a")
    assert caught.value.condition == "invalid-mechanism"


@pytest.mark.parametrize(
    "message",
    [b"", b"n", b"x,,n=user,r=a", b"n,,r=a", b"n,,n=us=er,r=a", b"n,,m=ext,n=user,r=a", b"\xff\xfe"],
)
def test_malformed_client_first(message: bytes) -> None:
    with pytest.raises(SaslFailure) as caught:
        server("SCRAM-SHA-1", None, "N").first(message)
    assert caught.value.condition == "malformed-request"


def test_plain_checks_against_the_stored_keys() -> None:
    credential = derive("pencil", b"salt" * 4, 4096, "sha256")
    lookup = {"user": credential}.get
    assert check_plain(b"\0user\0pencil", lookup) == ("user", "")
    for bad in (b"\0user\0pencil!", b"\0nobody\0pencil", b"\0user\0"):
        with pytest.raises(SaslFailure) as caught:
            check_plain(bad, lookup)
        assert caught.value.condition == "not-authorized"
    with pytest.raises(SaslFailure):
        check_plain(b"no nuls", lookup)
