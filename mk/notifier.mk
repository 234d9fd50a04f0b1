# The notifier. test-notifier: its unit and integration tests (aiosmtpd, a
# SendGrid-shaped server; PostgreSQL when TEST_POSTGRES_URL is set).
# outbox: the five newest mails the local stack wrote.
.PHONY: test-notifier outbox

test-notifier: $(VENV)/.installed
	$(PY) -m pytest tests/unit/notifier tests/integration/notifier $(PYTEST_ARGS)

outbox:
	@dir="$${VAR_DIR:-var}/outbox"; \
	if ls "$$dir"/*.eml >/dev/null 2>&1; then ls -1t "$$dir"/*.eml | head -n 5; \
	else echo "no mail in $$dir yet"; fi
