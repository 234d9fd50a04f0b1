"""The local stack: every service, the message relay and a dispatch gateway."""
