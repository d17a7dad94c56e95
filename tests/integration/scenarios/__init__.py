"""SPEC §1 scenarios: workflow files and the business functions they call.

Both ``tests/integration/test_scenarios_api.py`` (the Python API) and
``tests/e2e/test_cli_run.py`` (a real ``magic-flow run`` process) run these files; the helpers
here read what the functions recorded and check the shape of a result document (SPEC §3).
"""
