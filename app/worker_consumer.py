"""The worker's broker consumer: after a lost connection it tries again every few seconds, for good.

Celery's consumer reconnects 2 s, 4 s, 6 s … 30 s apart (kombu's defaults; Celery has
no setting for them) and gives up after ``broker_connection_max_retries``. After a
Redis restart a worker could stay away for up to 30 s more, and every probe slot
dispatched meanwhile would pass unstarted (``expired``); after a long outage it would
exit. A monitoring worker should be back within seconds of its broker, however long
the broker was away, so this consumer tries every ``RECONNECT_INTERVAL_MAX_SECONDS``
at most, with no limit on attempts (``celery_app.build_config`` sets
``broker_connection_max_retries`` to ``None``). Start-up is checked apart, with its own
bounded attempts (``core.redis_client.check_broker``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from celery.worker.consumer import Consumer

RECONNECT_INTERVAL_START_SECONDS = 0.5
RECONNECT_INTERVAL_STEP_SECONDS = 0.5
RECONNECT_INTERVAL_MAX_SECONDS = 2.0


class PromptReconnectConsumer(Consumer):
    """Celery's consumer, reconnecting 0.5 s, 1 s, 1.5 s, then every 2 s."""

    def ensure_connected(self, conn: Any) -> Any:
        conn.ensure_connection = partial(
            conn.ensure_connection,
            interval_start=RECONNECT_INTERVAL_START_SECONDS,
            interval_step=RECONNECT_INTERVAL_STEP_SECONDS,
            interval_max=RECONNECT_INTERVAL_MAX_SECONDS,
        )
        return super().ensure_connected(conn)
