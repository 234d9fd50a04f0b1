import pytest

from services.shared.pushauth import PushUnauthorized, PushVerifier


class FakeOidc:
    def verify(self, token):
        if token != "good":
            raise PushUnauthorized("bad signature")


def test_shared_token_must_match():
    verifier = PushVerifier("token", shared_token="s3cret")
    verifier.verify({}, {"token": "s3cret"})
    for query in ({}, {"token": ""}, {"token": "s3cre"}, {"token": "s3cret!"}):
        with pytest.raises(PushUnauthorized):
            verifier.verify({}, query)


def test_oidc_mode_needs_a_bearer_token():
    verifier = PushVerifier("oidc", oidc=FakeOidc())
    verifier.verify({"authorization": "Bearer good"}, {})
    for headers in ({}, {"authorization": "Basic good"}, {"authorization": "Bearer x"}):
        with pytest.raises(PushUnauthorized):
            verifier.verify(headers, {})
    assert verifier.challenge.startswith("Bearer")


class FakeOidcWithOwnError:
    class Refused(Exception):
        pass

    def verify(self, token):
        raise self.Refused("token for another audience")


def test_an_oidc_verifiers_own_error_becomes_unauthorized():
    fake = FakeOidcWithOwnError()
    verifier = PushVerifier("oidc", oidc=fake, oidc_errors=(fake.Refused,))
    with pytest.raises(PushUnauthorized, match="another audience"):
        verifier.verify({"authorization": "Bearer x"}, {})
