"""Runnable examples; the tests import some of their functions."""
