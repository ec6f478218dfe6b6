"""Migration 0009 repairs the flag versions an earlier amend stored with a period ending before
it starts, which made every read of the flag, and of its child, fail."""

from __future__ import annotations

from datetime import date

from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from sqlmodel import select

from api.flags.models import FlagVersion
from api.migrate import alembic_config
from tests.factories import NHS, flag_body


def repair(session) -> None:
    """Migration 0009's upgrade, run in the test's transaction (the suite's database is
    already at head, so the migration met no such rows there)."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://")).get_revision("0009")
    with Operations.context(MigrationContext.configure(session.connection())):
        script.module.upgrade()
    session.expire_all()


async def publish(client, world, **override) -> str:
    r = await client.post("/v1/flags", json=flag_body(**override), headers=world.auth("POLICE-A"))
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def test_reversed_periods_keep_their_end_and_start_on_it(client, world, session):
    reversed_, planned, open_ended = (
        await publish(client, world),
        await publish(client, world, subject={"nhs_number": NHS[1]},
                      period={"start": "2026-02-01", "end": "2026-03-01"}),
        await publish(client, world, subject={"nhs_number": NHS[2]}))
    # As amend() stored it: the publication day as the start, the publisher's end before it.
    stored = session.get(FlagVersion, (reversed_, 1))
    stored.period_start, stored.period_end = date(2026, 12, 7), date(2020, 1, 1)
    session.add(stored)
    session.commit()
    broken = await client.get(f"/v1/flags/{reversed_}", headers=world.auth("POLICE-A"))
    assert broken.status_code == 500

    repair(session)

    periods = dict(session.exec(select(FlagVersion.flag_id, FlagVersion.period_start)).all())
    ends = dict(session.exec(select(FlagVersion.flag_id, FlagVersion.period_end)).all())
    assert (periods[reversed_], ends[reversed_]) == (date(2020, 1, 1), date(2020, 1, 1))
    assert (periods[planned], ends[planned]) == (date(2026, 2, 1), date(2026, 3, 1))
    assert (periods[open_ended], ends[open_ended]) == (None, None)
    for who in ("POLICE-A", "CSC-A"):
        r = await client.get(f"/v1/flags/{reversed_}", headers=world.auth(who))
        assert r.status_code == 200, r.text
        assert r.json()["period"] == {"start": "2020-01-01", "end": "2020-01-01"}
    child = (await client.get(f"/v1/flags/{reversed_}", headers=world.auth("POLICE-A"))).json()
    view = await client.get(f"/v1/children/{child['child_id']}", headers=world.auth("mash.a"),
                            params={"purpose": "mash_triage", "reason": "Referral"})
    assert view.status_code == 200, view.text
