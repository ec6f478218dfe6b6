"""The Docker deployment, checked without a Docker engine: docker-compose.yml against the
official Compose Specification schema and the real Compose CLI's `config`, the topology it
describes, and the database password read from a secret file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from api.settings import REPO_ROOT, Settings

COMPOSE = REPO_ROOT / "docker-compose.yml"
CHECK_JSONSCHEMA = str(Path(sys.executable).parent / "check-jsonschema")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_follows_the_official_compose_spec_schema(tmp_path):
    out = subprocess.run([CHECK_JSONSCHEMA, "--builtin-schema", "vendor.compose-spec",
                          str(COMPOSE)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    # The check can fail: a condition Compose does not know is refused.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("service_completed_successfully", "done"))
    refused = subprocess.run([CHECK_JSONSCHEMA, "--builtin-schema", "vendor.compose-spec",
                              str(broken)], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "'done' is not one of" in refused.stdout


def _compose_cli() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(
            ["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_the_compose_cli_accepts_the_file():
    cli = _compose_cli()
    if cli is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no Compose CLI under CI=true: scripts/test installs Debian's docker-compose")
        pytest.skip("no `docker compose` plugin or `docker-compose` here (Debian: apt-get "
                    "install docker-compose); the schema test above still ran")
    out = subprocess.run([*cli, "-f", str(COMPOSE), "config"], capture_output=True, text=True,
                         cwd=REPO_ROOT, timeout=120,
                         env={"PATH": "/usr/local/bin:/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    resolved = yaml.safe_load(out.stdout)["services"]
    assert set(resolved) == {"db", "migrate", "api", "worker", "proxy"}
    assert resolved["proxy"]["ports"][0]["published"] in (8080, "8080")


def test_compose_describes_the_scaled_out_topology():
    doc = compose()
    services = doc["services"]
    # Migrations run once, in a one-shot service everything else waits for.
    assert services["migrate"]["command"] == ["flagshare", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name, command in (("api", "serve"), ("worker", "worker")):
        service = services[name]
        assert service["command"][:2] == ["flagshare", command]
        assert service["deploy"]["replicas"] == 2
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert service["depends_on"]["db"] == {"condition": "service_healthy"}
        assert service["environment"]["FLAGSHARE_EMBEDDED_WORKER"] == "false"
    # The API replicas trust the proxy's X-Forwarded-For, so per-address limits see callers.
    assert services["api"]["environment"]["FORWARDED_ALLOW_IPS"] == "*"
    assert "FORWARDED_ALLOW_IPS" not in services["worker"]["environment"]
    for name in ("db", "api", "proxy"):
        assert services[name]["healthcheck"]["test"], name
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(services["proxy"]["healthcheck"]["test"])
    # Only the proxy is published; it balances the API replicas named in its config file.
    assert [n for n, s in services.items() if "ports" in s] == ["proxy"]
    (mount,) = services["proxy"]["volumes"]
    conf = REPO_ROOT / mount.split(":")[0]
    assert re.search(r"upstream flagshare_api \{\s*server api:8000", conf.read_text())
    # The database lives on a volume.
    assert services["db"]["volumes"] == ["dbdata:/var/lib/postgresql/data"]
    assert "dbdata" in doc["volumes"]


def test_the_database_password_and_key_passphrase_are_only_ever_secret_files():
    doc = compose()
    text = COMPOSE.read_text()
    assert "POSTGRES_PASSWORD:" not in text and "PGPASSWORD" not in text
    assert set(doc["secrets"]) == {"db_password", "signing_key_passphrase"}
    for name, service in doc["services"].items():
        if name == "proxy":
            assert "secrets" not in service
            continue
        env = service["environment"]
        url = env.get("FLAGSHARE_DATABASE_URL")
        if not url:  # PostgreSQL itself has no use for the signing keys' passphrase
            assert service["secrets"] == ["db_password"], name
            continue
        assert service["secrets"] == ["db_password", "signing_key_passphrase"], name
        # no password in the URL; the service reads it from the secret
        assert re.match(r"postgresql\+psycopg://flagshare@db:5432/flagshare$", url)
        assert env["FLAGSHARE_DATABASE_PASSWORD_FILE"] == "/run/secrets/db_password"
        assert env["FLAGSHARE_SIGNING_KEY_PASSPHRASE_FILE"] == \
            "/run/secrets/signing_key_passphrase"
    assert doc["services"]["db"]["environment"]["POSTGRES_PASSWORD_FILE"] == \
        "/run/secrets/db_password"


def test_the_image_copies_what_exists_and_runs_unprivileged():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO_ROOT / source).exists(), source
    assert re.search(r"^USER flagshare$", dockerfile, re.M)
    assert "FLAGSHARE_POLICY_DIR=/app/policies" in dockerfile


def test_password_file_completes_the_database_url(tmp_path):
    secret = tmp_path / "db_password"
    secret.write_text("p@ss/word:1\n")  # as `openssl rand` or an editor leaves it
    settings = Settings(database_url="postgresql+psycopg://flagshare@db:5432/flagshare",
                        database_password_file=secret)
    assert settings.database_url == \
        "postgresql+psycopg://flagshare:p%40ss%2Fword%3A1@db:5432/flagshare"


@pytest.mark.parametrize("url,content,message", [
    ("postgresql+psycopg://flagshare@db/flagshare", None, "cannot read"),
    ("postgresql+psycopg://flagshare@db/flagshare", "\n", "is empty"),
    ("sqlite:///x.db", "secret", "is for PostgreSQL"),
])
def test_bad_password_file_names_the_setting(tmp_path, url, content, message):
    secret = tmp_path / "db_password"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(ValidationError) as err:
        Settings(database_url=url, database_password_file=secret)
    (error,) = err.value.errors()
    assert error["loc"] == ("database_password_file",) and message in error["msg"]
