"""`staffvoice serve`: one aiohttp process hosting the adapters, health, metrics and the scheduler.

- mounts.py: the platform adapters mount themselves on the web application (or attach their
  ports without listening, for one-off commands)
- health.py: /healthz and /readyz
- metrics.py: /metrics (events by kind and outcome, the scheduler, the send ledger)
- app.py: the one web application, put together from the above
- migrate.py: start-up's migrations, in a child process (Alembic stays out of the server)
- lifecycle.py: start-up, serving, and a clean stop on SIGTERM
- cli.py: the `serve` command line

To use more cores or machines, run more `serve` processes (replicas) sharing the port
(`--reuse-port`) or behind a load balancer; see docs/deploy.md.
"""
