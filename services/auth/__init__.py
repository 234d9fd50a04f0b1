"""The accounts service: sign-up, log-in, access tokens and their keys."""
