"""Simulated chargers, one module per OCPP version (``simulator.v16``, ``simulator.v201``), and what
they share (``simulator.connection``: the socket, basic auth, the reconnect backoff).

They speak to the CSMS over a socket as a real charger does, with the ``ocpp`` library's client; the
package imports nothing of Django or of the CSMS, so the bench's load generators import it in plain
processes.
"""
