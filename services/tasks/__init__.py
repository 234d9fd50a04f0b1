"""The tasks service: uploads, conversion tasks and their files."""
