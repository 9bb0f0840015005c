"""Shared by every agent: API object helpers, storage, selectors, settings, logging, errors.

This package imports no component package (enforced by import-linter).
"""
