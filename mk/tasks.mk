# The tasks service. test-tasks: its unit and service tests, and its PostgreSQL
# tests when TEST_POSTGRES_URL is set (they skip, saying why, without it).
.PHONY: test-tasks

test-tasks: $(VENV)/.installed
	$(PY) -m pytest tests/unit/tasks tests/integration/tasks $(PYTEST_ARGS)
