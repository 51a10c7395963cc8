"""Sensors over running zdtp workers."""
