import pytest

from bot.webhooks import InvalidPayload, github_json, github_signature, read_json, verify_github_signature

DOCS_SECRET = "It's a Secret to Everybody"
DOCS_BODY = b"Hello, World!"
DOCS_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_the_documented_test_vector():
    assert github_signature(DOCS_SECRET, DOCS_BODY) == DOCS_SIGNATURE
    assert verify_github_signature(DOCS_SECRET, DOCS_BODY, DOCS_SIGNATURE)


@pytest.mark.parametrize(
    "secret, body, header",
    [
        (DOCS_SECRET, DOCS_BODY, None),
        (DOCS_SECRET, DOCS_BODY, ""),
        (DOCS_SECRET, DOCS_BODY, DOCS_SIGNATURE.upper()),
        (DOCS_SECRET, DOCS_BODY + b" ", DOCS_SIGNATURE),
        ("other secret", DOCS_BODY, DOCS_SIGNATURE),
        (DOCS_SECRET, DOCS_BODY, "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59"),
        ("", DOCS_BODY, github_signature("", DOCS_BODY)),
    ],
)
def test_signatures_that_must_be_rejected(secret, body, header):
    assert not verify_github_signature(secret, body, header)


def parse_github_body(body: bytes, content_type: str) -> dict:
    return read_json(github_json(body, content_type))


@pytest.mark.parametrize(
    "body, content_type, reason",
    [
        (b"not json", "application/json", "not JSON"),
        (b"[1, 2]", "application/json", "not an object"),
        (b"\xff\xfe", "application/json", "not UTF-8"),
        (b"other=1", "application/x-www-form-urlencoded", "no payload field"),
        (b"[" * 200_000 + b"]" * 200_000, "application/json", "recursion limit"),
        (b'{"a": NaN}', "application/json", "not JSON"),
        (b'{"a": -Infinity}', "application/json", "not JSON"),
        (b'{"a": [1, 1e400]}', "application/json", r"a\[1\]: a number too large"),
        (b'{"a": {"b": "x\\u0000y"}}', "application/json", "a.b: a string with a NUL"),
        (b'{"a\\u0000": 1}', "application/json", "a key with a NUL"),
        (b'{"id": 18446744073709551616}', "application/json", "id: an integer beyond 64 bits"),
        (b'{"id": -9223372036854775809}', "application/json", "id: an integer beyond 64 bits"),
        (b'{"a": "\\ud800"}', "application/json", "not JSON"),
    ],
)
def test_unreadable_bodies_say_why(body, content_type, reason):
    with pytest.raises(InvalidPayload, match=reason):
        parse_github_body(body, content_type)


@pytest.mark.parametrize("body", [
    b'{"id": 9223372036854775807, "low": -9223372036854775808, "e": 1e300, "text": "a \\\\u0000 b"}',
    '{"emoji": "\\ud83d\\ude00 \u00e9"}'.encode(),
])
def test_what_the_database_can_store_is_read(body):
    assert parse_github_body(body, "application/json")


def test_form_encoded_payloads_are_read():
    assert parse_github_body(b"payload=%7B%22a%22%3A1%7D", "application/x-www-form-urlencoded") == {"a": 1}
