"""Tests of the learned router."""
