"""Google Cloud adapters: Pub/Sub publishing, Cloud Storage, push-token checks.

Each module imports its Google client library when first used, so a service
running on the embedded backends never loads them.
"""
