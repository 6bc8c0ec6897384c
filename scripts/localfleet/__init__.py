"""The local fleet: N instances of the serving stack behind HAProxy, for rehearsing rolls.

`scripts/localfleetctl.py` is the command (`make fleet-up`, `fleet-status`, `roll-local`,
`fleet-down`). Each module has one job:

- ``health``: the load balancer's health check (the AWS target group's numbers)
- ``runtime``: HAProxy's runtime API (servers, drain, add, remove)
- ``balancer``: the HAProxy process and its configuration
- ``instances``: one instance (nginx + gunicorn via scripts/localstack.py) and the fleet's state file
- ``roll``: launch before terminate, one instance at a time, and rollback
- ``cli``: the subcommands
"""
