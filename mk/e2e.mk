# test-e2e-cloud: the end-to-end suite again, on the Pub/Sub and Cloud Storage
# emulators and (with TEST_POSTGRES_URL) PostgreSQL. make test runs it last.
.PHONY: test-e2e-cloud

test-e2e-cloud: $(VENV)/.installed
	PY=$(PY) tests/e2e/on_emulators.sh $(PYTEST_ARGS)
