"""Shared test fakes: builders of inputs that no public sample covers."""
