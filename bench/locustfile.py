"""Locust users for bench/load.py: police systems publishing flags and a school reading them
and its feed, spread over the API processes, each user at a constant rate.

Configured by bench/load.py through the environment (FLAGSHARE_LOAD_*), with one token per
agency fetched up front as an agency system caches its token (each token request is a
deliberately slow argon2 check of the client secret). Every request's time and outcome is
written to FLAGSHARE_LOAD_SAMPLES when the run ends.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time

from locust import HttpUser, constant_throughput, events, task

from tests.factories import NHS, flag_body

HOSTS = os.environ["FLAGSHARE_LOAD_HOSTS"].split(",")
TOKENS = json.loads(os.environ["FLAGSHARE_LOAD_TOKENS"])  # agency -> bearer header
PER_USER_RATE = float(os.environ["FLAGSHARE_LOAD_USER_RATE"])
SAMPLES: list[tuple[float, float, bool]] = []  # (unix time, milliseconds, ok)
PUBLISHED: list[str] = []
NEXT_HOST = itertools.count()


@events.request.add_listener
def _record(response_time, exception, **_):
    SAMPLES.append((time.time(), response_time, exception is None))


@events.quitting.add_listener
def _dump(**_):
    with open(os.environ["FLAGSHARE_LOAD_SAMPLES"], "w") as f:
        json.dump(SAMPLES, f)


class Agencies(HttpUser):
    wait_time = constant_throughput(PER_USER_RATE)
    host = HOSTS[0]

    def on_start(self):
        self.client.base_url = HOSTS[next(NEXT_HOST) % len(HOSTS)]
        self.police, self.school = TOKENS["L-POLICE"], TOKENS["L-SCHOOL"]
        self.cursor = None

    @task(2)
    def publish(self):
        body = flag_body(subject={"nhs_number": random.choice(NHS[:4])},
                         summary="Police attended the home overnight; the child was present.")
        with self.client.post("/v1/flags", json=body, headers=self.police,
                              catch_response=True) as r:
            if r.status_code == 201:
                PUBLISHED.append(r.json()["id"])
            else:
                r.failure(f"HTTP {r.status_code}")

    @task(3)
    def read_flag(self):
        if not PUBLISHED:
            return
        self.client.get(f"/v1/flags/{random.choice(PUBLISHED[-200:])}", headers=self.school,
                        name="/v1/flags/{id}")

    @task(1)
    def feed(self):
        params = {"cursor": self.cursor} if self.cursor else {}
        r = self.client.get("/v1/feed", params=params, headers=self.school, name="/v1/feed")
        if r.status_code == 200:
            self.cursor = r.json().get("next_cursor") or self.cursor
