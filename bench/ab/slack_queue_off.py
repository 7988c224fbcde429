"""LOAD_HOOK for an A/B: Slack's Home tab and deactivations start at once (not queued with
messages), and no bound on the queue of work after acks (the order before lat10)."""

import math

import adapters.slack.app

adapters.slack.app.ALL_QUEUED = False
adapters.slack.app.QUEUE_MAX = math.inf  # type: ignore[assignment]
