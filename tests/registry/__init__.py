"""Tests of handler/registry, a module each."""
