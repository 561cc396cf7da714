"""Tests of handler/catalog, a module each."""
