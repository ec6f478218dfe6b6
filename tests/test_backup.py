"""`flagshare db backup`: a consistent, checked copy of the embedded SQLite database, taken while
the service writes, that a new server can run on."""

from __future__ import annotations

import shutil
import sqlite3
import threading

import httpx
import pytest

from api import cli
from api.migrate import upgrade
from tests.factories import BIRMINGHAM, NHS, flag_body
from tests.processes import run_cli, running_server, wait_until


def test_a_backup_taken_while_flags_are_published_is_whole_and_restores(tmp_path):
    live = tmp_path / "live.db"
    published: list[str] = []
    stop = threading.Event()
    with running_server(f"sqlite:///{live}", tmp_path) as server:
        server.add_agency("BK-POLICE", "police", BIRMINGHAM)
        server.add_agency("BK-CSC", "childrens_social_care", BIRMINGHAM)

        def publish_until_stopped(token: dict[str, str]) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                while not stop.is_set():
                    body = flag_body(subject={"nhs_number": NHS[len(published) % 5]})
                    r = http.post("/v1/flags", json=body, headers=token)
                    assert r.status_code == 201, r.text
                    published.append(r.json()["id"])

        # A long read (an audit export, say) holds its snapshot, so SQLite cannot checkpoint
        # what is written meanwhile: it all stays in the -wal file, which a copy of the
        # database file alone would miss.
        reader = sqlite3.connect(live, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM flag").fetchone()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            publisher = threading.Thread(target=publish_until_stopped,
                                         args=(server.token(http, "BK-POLICE"),))
            publisher.start()
            try:
                wait_until(lambda: len(published) >= 5, 30, "flags published")
                before = list(published)
                out = run_cli(server.env, "db", "backup", str(tmp_path / "backup.db"))
                wait_until(lambda: len(published) >= len(before) + 5, 30, "publishing went on")
            finally:
                stop.set()
                publisher.join(timeout=30)
                reader.close()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK: a good backup" in out.stdout
    backup = tmp_path / "backup.db"
    assert not (tmp_path / "backup.db.partial").exists()
    assert not (tmp_path / "backup.db-wal").exists()  # one self-contained file
    with sqlite3.connect(backup) as copy:
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        held = {row[0] for row in copy.execute("SELECT id FROM flag")}
    assert set(before) <= held  # everything committed before the backup began is in it
    assert len(held) < len(published)  # and it is a snapshot, not the live file later

    # Restored: a new server runs on a copy of the backup, and its log verifies.
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copy(backup, restored / "flagshare.db")
    with running_server(f"sqlite:///{restored / 'flagshare.db'}", restored) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        server.add_user("auditor.backup", "auditor")
        verified = http.get("/v1/audit/verify", headers=server.user_token(http, "auditor.backup"))
        assert verified.status_code == 200 and verified.json()["ok"] is True, verified.text
        server.add_agency("BK-POLICE2", "police", BIRMINGHAM)
        flag = http.get(f"/v1/flags/{before[0]}", headers=server.token(http, "BK-POLICE2"))
        assert flag.status_code == 404  # another police force: the copy keeps who may see what


@pytest.fixture
def small_database(tmp_path, monkeypatch):
    """A migrated SQLite file with a few audit events, named by FLAGSHARE_DATABASE_URL."""
    url = f"sqlite:///{tmp_path / 'small.db'}"
    upgrade(url)
    monkeypatch.setenv("FLAGSHARE_DATABASE_URL", url)
    for n in (1, 2):
        assert cli.main(["agencies", "add", "--id", f"BK-GP-{n}", "--name", "Practice",
                         "--kind", "gp", "--area", BIRMINGHAM]) == 0
    return tmp_path / "small.db"


def test_a_backup_never_overwrites_a_file(small_database, tmp_path, capsys):
    target = tmp_path / "yesterday.db"
    target.write_text("yesterday's backup")
    assert cli.main(["db", "backup", str(target)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert target.read_text() == "yesterday's backup"


def test_a_copy_whose_log_does_not_verify_is_kept_and_reported(small_database, tmp_path,
                                                                capsys):
    with sqlite3.connect(small_database) as db:  # as someone with the file: triggers off
        db.execute("DROP TRIGGER auditevent_no_update")
        db.execute("UPDATE auditevent SET outcome = 'rewritten' WHERE seq = 1")
    target = tmp_path / "copy.db"
    assert cli.main(["db", "backup", str(target)]) == 1
    printed = capsys.readouterr().out
    assert "does NOT verify" in printed and "TAMPERED: first bad seq 1" in printed
    assert target.exists()  # a faithful copy of what the database holds


def test_postgresql_is_backed_up_with_its_own_tools(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLAGSHARE_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1/test")
    assert cli.main(["db", "backup", str(tmp_path / "x.db")]) == 1
    assert "pg_dump" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()
