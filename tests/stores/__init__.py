"""Tests of handler/stores, a module each."""
