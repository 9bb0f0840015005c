"""Shared by every agent: API object helpers, the API client, selectors, settings, logging, errors.

This package imports no component package (enforced by import-linter).
"""
