# Google Cloud: staging, provisioning, deploying, and the local proof of it.
#   make stage [PROJECT=p] [ENV_FILE=f] [SERVICE=name]   build/<service>/
#   make provision PROJECT=p [PROJECT_NUMBER=n]           Pub/Sub from pubsub.yaml
#   make provision                                        the emulator, when
#                                                         PUBSUB_EMULATOR_HOST is set
#   make deploy PROJECT=p [SERVICE=name] [ENV_FILE=f]     stage + gcloud app deploy
#   make migrate [SERVICE=name]                           <SERVICE>_DATABASE_URL
#   make emulators                                        Pub/Sub + storage emulators
#   make dev-appserver [PORT=8090]                        staged services under
#                                                         the SDK's dev_appserver.py
#   make test-gcp                                         adapters, provisioning,
#                                                         staging, dev_appserver
# ENDPOINT_TEMPLATE= (stage, provision, deploy alike) names the services' URLs,
# e.g. 'https://{service}-dot-{project}.ew.r.appspot.com' (docs/deployment.md).
.PHONY: stage provision deploy migrate emulators dev-appserver test-gcp

TEMPLATE_FLAG = $(if $(ENDPOINT_TEMPLATE),--endpoint-template '$(ENDPOINT_TEMPLATE)')

stage: $(VENV)/.installed
	$(PY) -m deploy.stage $(if $(PROJECT),--project $(PROJECT)) \
		$(if $(ENV_FILE),--env-file $(ENV_FILE)) $(TEMPLATE_FLAG) $(SERVICE)

provision: $(VENV)/.installed
	$(PY) -m deploy.provision \
		$(if $(PUBSUB_EMULATOR_HOST),--emulator) \
		$(if $(PROJECT),--project $(PROJECT)) \
		$(if $(PROJECT_NUMBER),--project-number $(PROJECT_NUMBER)) \
		$(TEMPLATE_FLAG) \
		$(if $(DRY_RUN),--dry-run)

deploy: $(VENV)/.installed
	@test -n "$(PROJECT)" || { echo "make deploy needs PROJECT=<project id>" >&2; exit 2; }
	$(PY) -m deploy.deploy --project $(PROJECT) \
		$(if $(SERVICE),--service $(SERVICE)) \
		$(if $(ENV_FILE),--env-file $(ENV_FILE)) \
		$(if $(VERSION),--version $(VERSION)) \
		$(if $(NO_PROMOTE),--no-promote) \
		$(TEMPLATE_FLAG) \
		$(if $(DRY_RUN),--dry-run)

migrate: $(VENV)/.installed
	$(PY) -m deploy.migrate $(SERVICE)

emulators: $(VENV)/.installed
	$(PY) -m deploy.emulators --bucket audiomill-dev

dev-appserver: $(VENV)/.installed
	$(PY) -m deploy.dev_appserver --port $${PORT:-8090}

test-gcp: $(VENV)/.installed
	$(PY) -m pytest tests/unit/gcp tests/integration/gcp tests/deploy $(PYTEST_ARGS)
