"""Large answers are gzipped for clients that ask; the rest of the API answers as before."""

from __future__ import annotations

import gzip
import json

from tests.api import Api
from tests.conftest import make_probe, make_tenant


def test_a_large_answer_is_gzipped_for_a_client_that_asks_and_plain_otherwise(api: Api) -> None:
    tenant = make_tenant()
    admin = api.as_role(tenant.id, "viewer")
    for n in range(60):
        make_probe(tenant.id, f"http://127.0.0.1:9/{n}", name=f"probe-{n:03d}")

    plain = admin.get("/api/v1/probes?per_page=100")
    zipped = admin.get("/api/v1/probes?per_page=100", headers={"Accept-Encoding": "gzip"})

    assert plain.status_code == zipped.status_code == 200
    assert "Content-Encoding" not in plain.headers
    assert zipped.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in zipped.headers["Vary"]
    assert len(zipped.data) < len(plain.data) / 3
    assert json.loads(gzip.decompress(zipped.data)) == plain.get_json()


def test_a_small_answer_is_sent_as_it_is(api: Api) -> None:
    response = api.client.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200 and "Content-Encoding" not in response.headers
