# The auth service. test-auth: its unit and service tests, and its PostgreSQL
# tests when TEST_POSTGRES_URL is set (they skip, saying why, without it).
.PHONY: test-auth

test-auth: $(VENV)/.installed
	$(PY) -m pytest tests/unit/auth tests/integration/auth $(PYTEST_ARGS)
