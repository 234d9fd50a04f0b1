"""Staging, provisioning and deploying Audiomill on Google Cloud."""
