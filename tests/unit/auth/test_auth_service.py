"""The auth app through HTTP: the contract in openapi/auth.yaml (responses
validated against it), the bad-input table, the throttle and the tokens."""

from __future__ import annotations

import base64
import json
import time

import jsonschema
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from sqlalchemy import delete, func, select
from starlette.testclient import TestClient

from services.auth.main import create_app
from services.auth.models import LoginFailure, User
from services.auth.passwords import Passwords
from services.auth.settings import AuthSettings
from services.shared.db import make_engine, make_session_factory, upgrade
from services.shared.tokens import JwksVerifier, generate_key_pem
from services.shared.web import spec_dir
from tests.unit.auth.auth_fakes import CHEAP, MIGRATIONS, PASSWORD, FakeClock

SIGNUP = "/api/auth/signup"
LOGIN = "/api/auth/login"
ME = "/api/auth/me"
ADA = {
    "username": "ada",
    "email": "ada@example.com",
    "password1": PASSWORD,
    "password2": PASSWORD,
}


# One app for the module (building one parses the spec); each test starts
# from empty tables and a fresh clock.
@pytest.fixture(scope="module")
def service(tmp_path_factory, signing_key_pem):
    root = tmp_path_factory.mktemp("auth-service")
    url = f"sqlite:///{root / 'auth.db'}"
    upgrade(url, MIGRATIONS)
    settings = AuthSettings.from_env(
        {
            "VAR_DIR": str(root),
            "DATABASE_URL": url,
            "AUTH_SIGNING_KEY": signing_key_pem.decode(),
        }
    )
    clock = FakeClock()
    engine = make_engine(url)
    app = create_app(settings, clock=clock, passwords=Passwords(CHEAP))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield settings, clock, make_session_factory(engine), client
    engine.dispose()


@pytest.fixture
def settings(service):
    return service[0]


@pytest.fixture
def clock(service):
    service[1].now = FakeClock().now
    return service[1]


@pytest.fixture
def sessions(service):
    return service[2]


@pytest.fixture
def client(service, clock, sessions):
    with sessions() as session:
        session.execute(delete(LoginFailure))
        session.execute(delete(User))
        session.commit()
    return service[3]


PROBLEM_SCHEMA = yaml.safe_load((spec_dir() / "auth.yaml").read_text())["components"][
    "schemas"
]["Problem"]


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    jsonschema.validate(body, PROBLEM_SCHEMA)
    assert body["status"] == status
    assert body["title"]
    assert isinstance(body["detail"], str) and len(body["detail"]) > 10
    assert "Traceback" not in body["detail"]
    return body


def count(sessions, model) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def signed_up(client, **changes) -> dict:
    response = client.post(SIGNUP, json={**ADA, **changes})
    assert response.status_code == 201, response.text
    return response.json()


def token_for(client, username="ada", password=PASSWORD) -> str:
    response = client.post(LOGIN, json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["token"]


# Sign-up


def test_signup_answers_the_user_and_never_the_hash(client):
    response = client.post(SIGNUP, json=ADA)

    assert response.status_code == 201
    user = response.json()
    assert set(user) == {"id", "username", "email", "created_at"}
    assert (user["username"], user["email"]) == ("ada", "ada@example.com")
    assert response.headers["location"] == "/api/auth/me"
    assert "argon2" not in response.text


@pytest.mark.parametrize("encoding", ["json", "form", "multipart"])
def test_signup_takes_json_and_form_bodies_and_the_first_versions_user_field(
    client, encoding
):
    body = {**ADA, "user": ADA["username"]}
    del body["username"]
    if encoding == "json":
        response = client.post(SIGNUP, json=body)
    elif encoding == "form":
        response = client.post(SIGNUP, data=body)
    else:
        response = client.post(SIGNUP, files={k: (None, v) for k, v in body.items()})

    assert response.status_code == 201, response.text
    assert response.json()["username"] == "ada"


BAD_SIGNUPS = [
    ("mismatched passwords", {"password2": PASSWORD + "!"}, 400, "differ"),
    ("malformed email", {"email": "ada.example.com"}, 400, "name@example.com"),
    ("email without a domain dot", {"email": "ada@localhost"}, 400, "email"),
    ("short password", {"password1": "short", "password2": "short"}, 400, "8"),
    ("missing username", {"username": None}, 400, "username"),
    ("missing email", {"email": None}, 400, "email"),
    ("missing password1", {"password1": None}, 400, "password1"),
    ("missing password2", {"password2": None}, 400, "password2"),
    ("username and user differ", {"user": "bob"}, 400, "`user`"),
    ("username with a space", {"username": "ada l"}, 400, "username"),
    ("unknown field", {"is_admin": True}, 400, "is_admin"),
    ("email of the wrong type", {"email": 42}, 400, "email"),
    ("overlong password", {"password1": "x" * 2000, "password2": "x" * 2000}, 400, ""),
]


@pytest.mark.parametrize(
    ("changes", "status", "hint"),
    [case[1:] for case in BAD_SIGNUPS],
    ids=[case[0] for case in BAD_SIGNUPS],
)
def test_a_bad_signup_is_a_problem_and_stores_nothing(
    client, sessions, changes, status, hint
):
    body = {k: v for k, v in {**ADA, **changes}.items() if v is not None}

    problem = assert_problem(client.post(SIGNUP, json=body), status)

    assert hint in problem["detail"]
    assert count(sessions, User) == 0


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        ("{not json", "application/json"),
        ("[1, 2]", "application/json"),
        ("", "application/json"),
        ("hello", "text/plain"),
    ],
    ids=["broken json", "json array", "empty body", "unsupported type"],
)
def test_a_body_that_is_not_a_form_is_a_problem(
    client, sessions, content, content_type
):
    response = client.post(
        SIGNUP, content=content, headers={"Content-Type": content_type}
    )

    assert 400 <= response.status_code < 500
    assert_problem(response, response.status_code)
    assert count(sessions, User) == 0


@pytest.mark.parametrize(
    "changes",
    [
        {"username": "ADA", "email": "other@example.com"},
        {"username": "other", "email": "ADA@Example.COM"},
    ],
    ids=["username in other case", "email in other case"],
)
def test_a_taken_username_or_email_is_a_conflict(client, sessions, changes):
    signed_up(client)

    assert_problem(client.post(SIGNUP, json={**ADA, **changes}), 409)
    assert count(sessions, User) == 1


# Log-in


def test_login_answers_a_bearer_token_the_published_keys_verify(client, settings):
    user = signed_up(client)

    response = client.post(LOGIN, json={"username": "ADA", "password": PASSWORD})

    assert response.status_code == 200
    body = response.json()
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 3600)
    jwks = client.get("/api/auth/jwks.json").json()
    verifier = JwksVerifier.from_jwks(jwks, "audiomill-auth", "audiomill")
    claims = verifier.verify(body["token"])
    assert claims["sub"] == str(user["id"])
    assert (claims["username"], claims["email"]) == ("ada", "ada@example.com")
    assert abs(claims["exp"] - (time.time() + 3600)) < 60
    assert jwt.get_unverified_header(body["token"])["kid"] == jwks["keys"][0]["kid"]


@pytest.mark.parametrize("encoding", ["json", "form"])
def test_login_by_email_in_a_form(client, encoding):
    signed_up(client)
    body = {"email": "Ada@Example.com", "password": PASSWORD}

    response = (
        client.post(LOGIN, json=body)
        if encoding == "json"
        else client.post(LOGIN, data=body)
    )

    assert response.status_code == 200, response.text


def test_unknown_user_and_wrong_password_get_the_same_answer(client):
    signed_up(client)

    wrong = client.post(LOGIN, json={"username": "ada", "password": "wrong password"})
    unknown = client.post(LOGIN, json={"username": "nobody", "password": PASSWORD})

    assert assert_problem(wrong, 401) == assert_problem(unknown, 401)
    assert wrong.headers.get("www-authenticate") == unknown.headers.get(
        "www-authenticate"
    )


@pytest.mark.parametrize(
    "body",
    [{"username": "ada"}, {"password": PASSWORD}, {"username": "", "password": "x"}],
    ids=["no password", "no account named", "empty username"],
)
def test_a_login_missing_a_field_is_a_bad_request(client, sessions, body):
    assert_problem(client.post(LOGIN, json=body), 400)
    assert count(sessions, LoginFailure) == 0


def test_five_failures_lock_the_account_with_retry_after(client, clock):
    signed_up(client)
    for _ in range(5):
        wrong = client.post(LOGIN, json={"username": "ada", "password": "bad guess"})
        assert_problem(wrong, 401)

    clock.advance(10)
    locked = client.post(LOGIN, json={"email": "ada@example.com", "password": PASSWORD})

    problem = assert_problem(locked, 429)
    assert locked.headers["retry-after"] == "890"
    assert "890 seconds" in problem["detail"]

    clock.advance(890)
    assert (
        client.post(LOGIN, json={"username": "ada", "password": PASSWORD}).status_code
        == 200
    )


# /me and the tokens


def test_me_is_the_caller(client):
    user = signed_up(client)

    response = client.get(ME, headers={"Authorization": f"Bearer {token_for(client)}"})

    assert response.status_code == 200
    assert response.json() == user


def _b64(data: dict) -> str:
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(user_id: int, **changes) -> dict:
    now = int(time.time())
    claims = {
        "iss": "audiomill-auth",
        "aud": "audiomill",
        "sub": str(user_id),
        "username": "ada",
        "email": "ada@example.com",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(changes)
    return claims


def _forge(kind: str, signing_key_pem: bytes, kid: str, user_id: int) -> str:
    key = serialization.load_pem_private_key(signing_key_pem, password=None)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"kid": kid}
    if kind == "alg none":
        return f"{_b64({'alg': 'none', 'kid': kid})}.{_b64(_claims(user_id))}."
    if kind == "hs256 with the public key":
        import hashlib
        import hmac

        signing_input = f"{_b64({'alg': 'HS256', 'kid': kid})}.{_b64(_claims(user_id))}"
        mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    if kind == "expired":
        claims = _claims(
            user_id, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600
        )
        return jwt.encode(claims, key, algorithm="RS256", headers=header)
    if kind == "another issuer":
        return jwt.encode(_claims(user_id, iss="evil"), key, "RS256", headers=header)
    if kind == "another audience":
        return jwt.encode(_claims(user_id, aud="other"), key, "RS256", headers=header)
    if kind == "another key, our kid":
        other = serialization.load_pem_private_key(generate_key_pem(), password=None)
        return jwt.encode(_claims(user_id), other, "RS256", headers=header)
    if kind == "unknown kid":
        return jwt.encode(_claims(user_id), key, "RS256", headers={"kid": "nope"})
    if kind == "no subject number":
        return jwt.encode(_claims(user_id, sub="ada"), key, "RS256", headers=header)
    if kind == "tampered payload":
        good = jwt.encode(_claims(user_id), key, "RS256", headers=header)
        head, _, signature = good.split(".")
        return f"{head}.{_b64(_claims(user_id + 1))}.{signature}"
    if kind == "garbage":
        return "not.a.token"
    raise AssertionError(kind)


BAD_TOKENS = [
    "alg none",
    "hs256 with the public key",
    "expired",
    "another issuer",
    "another audience",
    "another key, our kid",
    "unknown kid",
    "no subject number",
    "tampered payload",
    "garbage",
]


@pytest.mark.parametrize("kind", BAD_TOKENS)
def test_a_bad_token_is_refused_with_a_challenge(client, signing_key_pem, kind):
    user = signed_up(client)
    kid = client.get("/api/auth/jwks.json").json()["keys"][0]["kid"]
    token = _forge(kind, signing_key_pem, kid, user["id"])

    response = client.get(ME, headers={"Authorization": f"Bearer {token}"})

    problem = assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "POST /api/auth/login" in problem["detail"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic YWRhOnB3"}, {"Authorization": "Bearer"}],
    ids=["no header", "basic", "bearer without token"],
)
def test_a_missing_token_is_refused_with_a_challenge(client, headers):
    response = client.get(ME, headers=headers)

    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_token_for_an_account_that_is_gone_is_refused(client, sessions):
    signed_up(client)
    token = token_for(client)
    with sessions() as session:
        session.query(User).delete()
        session.commit()

    assert_problem(client.get(ME, headers={"Authorization": f"Bearer {token}"}), 401)


def test_jwks_publishes_one_rs256_signing_key_with_caching(client):
    response = client.get("/api/auth/jwks.json")

    assert response.status_code == 200
    (key,) = response.json()["keys"]
    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
    assert "d" not in key and "p" not in key
    assert "max-age" in response.headers["cache-control"]


def test_a_short_token_lifetime_is_a_setting(settings, clock, passwords):
    app = create_app(settings, clock=clock, passwords=passwords, token_ttl_seconds=120)
    with TestClient(app) as short:
        signed_up(short)
        body = short.post(LOGIN, json={"username": "ada", "password": PASSWORD}).json()

    assert body["expires_in"] == 120


# The edges


def test_healthz_answers_outside_the_api_base_path(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_an_unreachable_database_is_a_503_that_says_to_retry(settings, passwords):
    from dataclasses import replace

    common = replace(
        settings.common, database_url="postgresql+psycopg2://nobody@127.0.0.1:9/none"
    )
    app = create_app(replace(settings, common=common), passwords=passwords)
    with TestClient(app, raise_server_exceptions=False) as offline:
        health = offline.get("/healthz")
        login = offline.post(LOGIN, json={"username": "ada", "password": PASSWORD})

    assert_problem(health, 503)
    problem = assert_problem(login, 503)
    assert "127.0.0.1" not in problem["detail"]
    assert login.headers["retry-after"]


def test_an_unexpected_fault_is_a_500_that_tells_nothing(settings, clock):
    class FakeBrokenPasswords(Passwords):
        def hash(self, password: str) -> str:
            raise RuntimeError("secret internals")

    app = create_app(settings, clock=clock, passwords=FakeBrokenPasswords(CHEAP))
    with TestClient(app, raise_server_exceptions=False) as broken:
        response = broken.post(SIGNUP, json=ADA)

    problem = assert_problem(response, 500)
    assert "secret" not in problem["detail"]


def test_an_unknown_route_is_a_problem(client):
    problem = assert_problem(client.get("/api/auth/nothing-here"), 404)

    assert "/api/auth/ui/" in problem["detail"]


def test_a_wrong_method_is_a_problem(client):
    assert_problem(client.delete("/api/auth/jwks.json"), 405)


def test_the_swagger_ui_is_served(client):
    response = client.get("/api/auth/ui/")

    assert response.status_code == 200
    assert "swagger" in response.text.lower()


def test_healthz_fails_until_the_database_is_migrated(tmp_path, signing_key_pem):
    settings = AuthSettings.from_env(
        {"VAR_DIR": str(tmp_path), "AUTH_SIGNING_KEY": signing_key_pem.decode()}
    )
    app = create_app(settings, passwords=Passwords(CHEAP))
    with TestClient(app, raise_server_exceptions=False) as unmigrated:
        problem = assert_problem(unmigrated.get("/healthz"), 503)

    assert "services.shared.migrate auth" in problem["detail"]
