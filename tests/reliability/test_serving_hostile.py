"""Hostile clients against the real model service process on loopback.

Complements ``tests/unit/test_serving.py`` (wrong types, NaN/inf, huge values, malformed
and deeply nested JSON, Content-Length and chunked bodies over the limit, missing and
wrong admin tokens): here every request is one a fuzzer or an attacker would send, and
after each one the same process must still answer ``/health`` and predict a good record.
Ends with a schemathesis run over the service's own OpenAPI schema.
"""

from __future__ import annotations

import json
import socket
from collections import Counter

import httpx
import psutil
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error


def _record_with(service, column: str, raw_value: str) -> bytes:
    """A body whose ``column`` holds ``raw_value`` written verbatim into the JSON text."""
    record = service.record(0)
    record[column] = "__VALUE__"
    return json.dumps({"records": [record]}).replace('"__VALUE__"', raw_value).encode()


# (label, body builder, expected status, words the reason must contain)
VALUE_CASES = [
    ("overflow-to-inf", "1e999", 422, "NaN and infinity"),
    ("negative-overflow", "-1e999", 422, "NaN and infinity"),
    ("nan-literal", "NaN", 422, "NaN and infinity"),
    ("infinity-literal", "-Infinity", 422, "NaN and infinity"),
    ("400-digit-integer", "9" * 400, 422, "too large"),
    ("5000-digit-integer", "9" * 5000, 400, "Invalid JSON"),
    ("tiny-float", "1e-400", 200, None),  # underflows to 0.0: a valid number
    ("lone-surrogate-string", '"\\ud800"', 422, "expected a number"),
    ("long-string", json.dumps("x" * 200_000), 422, "expected a number"),
    ("nested-500-deep", "[" * 500 + "]" * 500, 422, "expected a number"),
    ("object-value", '{"$where": "1"}', 422, "expected a number"),
]


@pytest.mark.parametrize(
    ("raw", "status", "words"),
    [c[1:] for c in VALUE_CASES],
    ids=[c[0] for c in VALUE_CASES],
)
def test_hostile_values_are_4xx_with_a_reason(service, raw, status, words):
    response = service.client.post(
        "/predict",
        content=_record_with(service, "mean texture", raw),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    if words is not None:
        assert words in response.json()["detail"], response.text
        if status == 422:
            assert "'mean texture'" in response.json()["detail"]
    assert service.healthy()


def _thousands_of_columns(service) -> bytes:
    record = service.record(0)
    record.update({f"col_{i}": float(i) for i in range(5000)})
    return json.dumps({"records": [record]}).encode()


def _only_unknown_columns(service) -> bytes:
    return json.dumps({"records": [{f"c{i}": 1 for i in range(3000)}]}).encode()


def _surrogate_column(service) -> bytes:
    return b'{"records": [{"\\udcff": 1.0}]}'


def _too_many_rows(service) -> bytes:
    return b'{"records": [' + b",".join([b"{}"] * 10_001) + b"]}"


def _many_bad_rows(service) -> bytes:
    return json.dumps({"records": [{"mean radius": "x"}] * 2000}).encode()


def _duplicate_keys(service) -> bytes:
    good = json.dumps(service.record(0))
    return ('{"records": "nope", "records": [' + good + "]}").encode()


def _deep_object(service) -> bytes:
    return b'{"records": [' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"]}"


BODY_CASES = {
    "5000-extra-columns": (_thousands_of_columns, 422, "unknown column"),
    "3000-unknown-columns-only": (_only_unknown_columns, 422, "missing column"),
    "surrogate-column-name": (_surrogate_column, 422, "Invalid input at records[0]"),
    "10001-rows": (_too_many_rows, 413, "limit is 10000"),
    "2000-bad-rows": (_many_bad_rows, 422, "more)"),
    "duplicate-keys-last-wins": (_duplicate_keys, 200, None),
    "100k-deep-object": (_deep_object, 400, "nested too deeply"),
}


@pytest.mark.parametrize("label", list(BODY_CASES))
def test_hostile_bodies_are_4xx_with_a_reason(service, label):
    build, status, words = BODY_CASES[label]
    response = service.client.post(
        "/predict", content=build(service), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text[:500]
    if words is not None:
        assert words in response.json()["detail"], response.text[:500]
        assert len(response.json().get("errors", [])) <= 20  # the reply stays small
    assert service.healthy()


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/predict", {}, 405),
        ("PUT", "/version", {}, 405),
        ("GET", "/../../etc/passwd", {}, 404),
        ("POST", "/predict", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ("POST", "/predict", {"Content-Type": "application/json; charset=latin-1"}, 400),
        ("GET", "/admin/reload", {}, 405),
    ],
    ids=["get-predict", "put-version", "path-traversal", "form-body", "latin1-body", "get-admin"],
)
def test_wrong_methods_paths_and_encodings_are_4xx(service, method, path, headers, status):
    body = '{"records": [{"mean radius": \'é\'}]}'.encode("latin-1")
    response = service.client.request(
        method, path, headers=headers, content=body if method == "POST" else None
    )
    assert response.status_code == status, response.text
    assert service.healthy()


def _raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data:
                break
    return data


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"GARBAGE\r\n\r\n",
    ],
    ids=["length-not-a-number", "negative-length", "absurd-length", "not-http"],
)
def test_broken_http_is_refused_not_crashed(service, request_bytes):
    reply = _raw_request(service.proc.port, request_bytes)
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else None
    # The HTTP parser (or our body limit) answers 4xx, or just drops the connection.
    assert status is None or 400 <= status < 500, reply[:300]
    assert service.healthy()


# -- admin token, logs and bind address ----------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer {token}x", "Bearer {token_prefix}", "Token {token}"],
    ids=["missing", "empty", "scheme-only", "suffix", "prefix", "other-scheme"],
)
def test_admin_refuses_missing_or_wrong_token(service, authorization):
    token = service.token
    if authorization is not None:
        authorization = authorization.format(token=token, token_prefix=token[:-1])
    headers = {} if authorization is None else {"Authorization": authorization}
    response = service.client.post("/admin/reload", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "admin token" in response.json()["detail"]
    assert service.token not in response.text


def test_token_never_appears_in_the_service_log(service):
    assert service.client.post("/admin/reload", headers=service.admin()).status_code == 200
    assert service.client.post("/admin/reload", headers={"Authorization": "Bearer nope"})
    output = service.proc.output()
    assert "POST /admin/reload" in output  # the access log is on: requests are logged
    assert service.token not in output
    assert service.token not in service.client.get("/health").text
    assert service.token not in service.client.get("/version").text
    assert service.token not in service.client.get("/openapi.json").text


def test_binds_to_localhost_unless_configured(service):
    listening = {
        conn.laddr
        for conn in psutil.Process(service.proc.proc.pid).net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    }
    assert listening == {("127.0.0.1", service.proc.port)}, listening
    assert f"on http://127.0.0.1:{service.proc.port}" in service.proc.output()


# -- schemathesis over the service's own OpenAPI schema ----------------------------------------


def _fuzz(operation, mode: GenerationMode, service, calls: list) -> None:
    """Send up to 40 generated requests of ``operation``, each with and without the token."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        for headers in (service.admin(), None):
            response = case.call(headers=headers, timeout=30)
            calls.append((operation.path, mode.value, response.status_code))
            case.validate_response(response, checks=[not_a_server_error])

    run()


def test_fuzzed_requests_never_get_a_server_error(service):
    """Schemathesis: valid and invalid requests for every operation of /openapi.json."""
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/predict", "/health", "/version", "/admin/reload"}
    calls: list[tuple[str, str, int]] = []
    for operation in operations:
        _fuzz(operation, GenerationMode.POSITIVE, service, calls)
        if operation.path == "/predict":  # the only input that can be made invalid
            _fuzz(operation, GenerationMode.NEGATIVE, service, calls)
    print(f"\nschemathesis: {len(calls)} calls, (path, mode, status) counts {Counter(calls)}")
    assert len(calls) >= 150
    assert not [c for c in calls if c[2] >= 500], calls
    assert {(c[1], c[2]) for c in calls if c[0] == "/predict"} >= {("negative", 422)}


def test_service_still_serves_after_the_fuzzing(service):
    assert service.healthy()
    assert service.proc.proc.poll() is None
    assert "Unhandled error" not in service.proc.output()
    with httpx.Client(base_url=service.url, timeout=10) as fresh:
        assert fresh.get("/version").json()["name"] == "reliability_service"
