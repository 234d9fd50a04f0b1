"""Pieces every Audiomill service imports: settings, logging, persistence,
storage, messaging, events, tokens and the HTTP edge helpers."""
