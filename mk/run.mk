# The local stack: every service, the relay and the gateway, until Ctrl-C.
.PHONY: run

run: $(VENV)/.installed
	$(PY) -m devstack
