"""converter: turns ``conversion.requested`` pushes into converted files."""
