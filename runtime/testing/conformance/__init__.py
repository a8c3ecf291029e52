"""Conformance suites: one base class of pytest tests per device Protocol."""
