"""Tests of handler/rules, a module each."""
