async def test_healthz_and_readyz(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


async def test_world_token_is_accepted(client, world):
    r = await client.get("/v1/agencies/GP-A", headers=world.auth("POLICE-A"))
    assert r.status_code == 200, r.text
    assert r.json() == {"id": "GP-A", "name": "Test gp GP-A", "kind": "gp", "area": "E08000025",
                        "disabled": False}
