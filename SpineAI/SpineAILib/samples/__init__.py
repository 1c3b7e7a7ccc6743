"""Synthetic sample data: phantoms and writers that turn them into real files (DICOM, ...).

Used by tests, demos and benchmarks so that every reader and task can be exercised
without patient data.
"""
