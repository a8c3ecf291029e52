"""Test support: fakes, harnesses and the device conformance suites."""
