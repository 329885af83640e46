"""Helpers the scripts and the tests both use (#23): the public-domain sample photos (`samples`), the reference
runtimes that the parity tests and the benchmarks compare the engine with (`mediapipe_reference`, run in a venv of
its own through `mediapipe_child`; `dlib_reference`), and the services' settings over a devstack's servers
(`service_settings`).

They live under scripts/ because the scripts must not import the tests; the tests import from here, and keep
their own helpers (fixtures, builders, test-only subclasses) in tests/support/. No service imports scripts
(tests/unit/test_import_graph.py checks both directions).
"""
