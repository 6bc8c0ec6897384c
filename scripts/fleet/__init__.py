"""The AWS fleet's operator commands: deploy the stack, roll, status, rollback.

One module per job; `scripts/fleetctl.py` is the command line. Every AWS call goes
through the clients in :mod:`fleet.clients`, so tests hand in moto- or Stubber-backed
ones and real AWS is the only production path.
"""
