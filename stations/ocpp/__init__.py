"""The OCPP adapters: one package per OCPP version (``v16``), each the only place its message shapes exist."""
