#!/usr/bin/env python3
"""Registers OpenBao nodes in a Consul agent the way Vault registers itself.

OpenBao has no Consul service registration; Vault's (serviceregistration/consul)
does, and that is what the redirector reads. This stands in for it, for the
real-cluster suite and the demo:
  - service "vault", ID "vault:<host>:<port>", Address/Port from the node's API
    address, tags "active" or "standby" (Vault's performance standbys get
    "performance-standby" instead), plus "initialized" once initialised;
  - one TTL check per node, ID "<service ID>:vault-sealed-check", TTL 5 s,
    passed while the node is unsealed and failed while it is sealed;
  - a node that does not answer is left alone, so its check turns critical
    when the TTL runs out, as with a crashed Vault process;
  - on SIGTERM/SIGINT every registration is removed, as a graceful Vault
    shutdown does.
The state comes from each node's own GET /v1/sys/health, once a second.

Usage: registrar.py CONSUL_URL NODE_URL [NODE_URL...]   (standard library only)
"""
import json
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

TTL = "5s"
PERIOD_SECONDS = 1.0


def call(method, url, body=None):
    """(status, body bytes), or (None, b"") when nothing answered."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=3) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (OSError, ValueError):
        return None, b""


def node_state(node_url):
    """Tags and sealed flag from /v1/sys/health, or None if the node is down."""
    status, body = call("GET", node_url + "/v1/sys/health")
    if status is None:
        return None
    try:
        health = json.loads(body)
    except ValueError:
        return None
    if status == 473:
        tags = ["performance-standby"]
    elif status == 200 and not health.get("standby", True):
        tags = ["active"]
    else:
        tags = ["standby"]
    if health.get("initialized"):
        tags.append("initialized")
    return tags, bool(health.get("sealed", True))


def register(consul, service_id, node, tags, sealed):
    call("PUT", consul + "/v1/agent/service/register", {
        "ID": service_id, "Name": "vault", "Tags": tags,
        "Address": node.hostname, "Port": node.port,
        "Meta": {"external-source": "vault"},
    })
    call("PUT", consul + "/v1/agent/check/register", {
        "ID": service_id + ":vault-sealed-check", "Name": "Vault Sealed Status",
        "ServiceID": service_id, "TTL": TTL,
        "Status": "critical" if sealed else "passing",
    })


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    consul = sys.argv[1].rstrip("/")
    nodes = [n.rstrip("/") for n in sys.argv[2:]]
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    registered = {}  # service ID -> tags last registered
    while not stopping:
        for node_url in nodes:
            node = urllib.parse.urlsplit(node_url)
            service_id = "vault:%s:%d" % (node.hostname, node.port)
            state = node_state(node_url)
            if state is None:
                continue
            tags, sealed = state
            if registered.get(service_id) != tags:
                register(consul, service_id, node, tags, sealed)
                registered[service_id] = tags
            verdict = "fail" if sealed else "pass"
            call("PUT", "%s/v1/agent/check/%s/%s:vault-sealed-check" % (consul, verdict, service_id))
        time.sleep(PERIOD_SECONDS)
    for service_id in registered:
        call("PUT", consul + "/v1/agent/service/deregister/" + service_id)


if __name__ == "__main__":
    main()
