"""Alert delivery on a bad day: an ``alerts`` worker SIGKILLed in the middle of a send.

Real worker and beat processes on the test Redis and the PostgreSQL database of
``pg_app``; a real webhook receiver on loopback that takes the first request and never
answers it, so the worker is killed while it waits for the channel.
"""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path
from typing import Iterator

import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import Notification, NotificationAttempt
from app.services import alert_rules, notification_channels
from tests.conftest import make_probe, make_tenant, wait_for
from tests.pipeline import DISPATCHING, Processes, wait_for_worker
from tests.receivers import WebhookReceiver
from tests.test_alerting import stored

pytestmark = pytest.mark.timeout(180)

LEASE_SECONDS = 6


@pytest.fixture
def processes(pg_app: Flask, postgres_url: str, tmp_path: Path) -> Iterator[Processes]:
    env = {**os.environ, "ADMIN_MIT_DATABASE__URL": postgres_url,
           "ADMIN_MIT_ALERTS__DELIVERY_LEASE_SECONDS": str(LEASE_SECONDS),
           "ADMIN_MIT_ALERTS__SEND_TIMEOUT_SECONDS": "5"}
    running = Processes(env, tmp_path)
    try:
        yield running
    finally:
        running.stop_all()


def test_a_worker_killed_mid_send_loses_nothing_and_the_receiver_sees_one_id(
        pg_app: Flask, processes: Processes) -> None:
    with WebhookReceiver() as receiver:
        tenant = make_tenant()
        probe = make_probe(tenant.id, "http://127.0.0.1:9/health", name="db-1")
        key = secrets.token_urlsafe(24)
        channel = notification_channels.create_channel(tenant.id, {
            "name": "hook", "kind": "webhook", "settings": {"url": f"{receiver.url}/hook"},
            "secrets": {"signing_key": key}})
        alert_rules.create_rule(tenant.id, {"name": "db down", "kind": "down", "probe_id": probe.id,
                                            "threshold": 1, "channel_ids": [channel.id]})
        processes.worker("first", "--pool=prefork", "--concurrency=1", queues="alerts")
        wait_for_worker("first")
        receiver.hang_next(1)

        stored(probe, "failed", error="connection refused")
        (hung,) = receiver.wait_for(1, timeout=30)  # the first worker is now waiting for an answer
        processes.stop("first", signal.SIGKILL)

        processes.worker("second", "--pool=prefork", "--concurrency=1", queues="alerts")
        processes.beat()  # its housekeeping takes the notification once the lease has run out
        wait_for(lambda: DISPATCHING in processes.log("beat"), timeout=60, what="beat")
        delivered = receiver.wait_for(2, timeout=LEASE_SECONDS + 40)[1]

        assert delivered.json["id"] == hung.json["id"]  # the same notification: a receiver can drop the repeat
        assert receiver.verify(key, delivered)
        assert delivered.json["event"] == "firing"

        def recorded() -> Notification | None:
            db.session.expire_all()
            notification = db.session.scalars(select(Notification)).one()
            db.session.rollback()
            return notification if notification.status == "sent" else None

        notification = wait_for(recorded, timeout=30, what="the notification recorded as sent")
        assert notification.attempts == 2  # the killed worker's claim, then the second worker's
        attempts = db.session.scalars(select(NotificationAttempt)).all()
        assert [(attempt.ok, attempt.worker.split(":")[0] != "") for attempt in attempts] == [(True, True)]
        assert len(receiver.requests) == 2
