"""Thin DVC stage scripts: each parses paths, reads its params.yaml section and calls one selfme function."""
