"""Small local stand-ins for outside services, for tests."""
