# The notifier. test-notifier: its unit and integration tests (aiosmtpd, a
# SendGrid-shaped server; PostgreSQL when TEST_POSTGRES_URL is set).
# outbox: the five newest mails the local stack wrote.
.PHONY: test-notifier outbox

test-notifier: $(VENV)/.installed
	$(PY) -m pytest tests/unit/notifier tests/integration/notifier $(PYTEST_ARGS)

outbox:
	@ls -1t "$${VAR_DIR:-var}"/outbox/*.eml 2>/dev/null | head -n 5 \
		|| echo "no mail in $${VAR_DIR:-var}/outbox yet"
