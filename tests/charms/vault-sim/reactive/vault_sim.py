"""The simulated vault application: serve every vault-kv request it is sent."""

import hvac
from charmhelpers.core import hookenv, unitdata
from charms.reactive import endpoint_from_name, when
from support.vault_provider import VaultProviderEmulator


@when("secrets.connected")
def serve_requests():
    config = hookenv.config()
    if not config.get("bao-url"):
        hookenv.status_set("blocked", "bao-url not set")
        return
    endpoint = endpoint_from_name("secrets")
    ca_file = config.get("bao-ca-file") or None
    client = hvac.Client(url=config["bao-url"], token=config["bao-token"], verify=ca_file or True)
    emulator = VaultProviderEmulator(client, token_ttl=config.get("token-ttl") or "60s")
    endpoint.publish_url(config["bao-url"])
    if ca_file:
        with open(ca_file) as handle:
            endpoint.publish_ca(handle.read())
    store = unitdata.kv()
    served = store.get("vault-sim.served") or {}
    refresh = config.get("refresh-secrets") or 0
    for request in endpoint.requests():
        signature = [
            request["secret_backend"],
            request["access_address"],
            request["hostname"],
            request["isolated"],
            request["unit"].relation.relation_id,
            refresh,
        ]
        if served.get(request["unit_name"]) == signature:
            continue
        previous = served.get(request["unit_name"])
        fresh_answer = previous is None or previous[4] != signature[4] or previous[5] != refresh
        role_id, token = emulator.serve(request, refresh=fresh_answer)
        if token is None:
            token = (store.get("vault-sim.tokens") or {}).get(request["unit_name"])
        else:
            tokens = store.get("vault-sim.tokens") or {}
            tokens[request["unit_name"]] = token
            store.set("vault-sim.tokens", tokens)
        endpoint.set_role_id(request["unit"], role_id, token)
        served[request["unit_name"]] = signature
        hookenv.log("vault-sim: served {} for {}".format(request["secret_backend"], request["unit_name"]))
    store.set("vault-sim.served", served)
    hookenv.status_set("active", "serving {} request(s)".format(len(served)))
