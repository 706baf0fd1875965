"""Authenticated sources: CURVE keys checked by the ZAP handler, each event held to its source's grants."""

import json
import os
import time

import zmq

from harness import Daemon, main

CTX = zmq.Context.instance()


def curve_daemon(name, extra=""):
    server_pub, server_sec = zmq.curve_keypair()
    d = Daemon(name)
    key = os.path.join(d.tmp, "ingest.key")
    with open(key, "wb") as f:
        f.write(server_sec + b"\n")
    os.chmod(key, 0o600)
    d.write_config('ingest: { endpoint = "tcp://127.0.0.1:%d"; curve = true; secret_key_file = "%s"; };\n%s'
                   % (d.ingest_port, key, extra))
    text = open(d.config_path).read().replace(
        'ingest: { endpoint = "tcp://127.0.0.1:%d"; };\n' % d.ingest_port, "", 1)
    open(d.config_path, "w").write(text)
    d.server_public = server_pub
    d.key_file = key
    return d


def client(d, public=None, secret=None):
    s = CTX.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if public:
        s.curve_publickey = public.encode() if isinstance(public, str) else public
        s.curve_secretkey = secret.encode() if isinstance(secret, str) else secret
        s.curve_serverkey = d.server_public
    mon = s.get_monitor_socket()
    s.connect("tcp://127.0.0.1:%d" % d.ingest_port)
    return s, mon


def send(s, env, timeout=5):
    s.send(json.dumps(env).encode())
    return json.loads(s.recv()) if s.poll(timeout * 1000) else None


def handshake_failed(mon, timeout=5):
    """True when the monitor reports a failed CURVE handshake."""
    from zmq.utils.monitor import recv_monitor_message
    deadline = time.time() + timeout
    failures = (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    while time.time() < deadline:
        if mon.poll(200):
            ev = recv_monitor_message(mon)
            if ev["event"] in failures:
                return True
            if ev["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                return False
    return False


def add_source(d, name, *args):
    r = d.ctl("source", "add", name, *args)
    assert r.returncode == 0, r
    out = json.loads(r.stdout)
    assert set(out) == {"source", "public_key", "secret_key"}, out
    return out


def test_sources_are_held_to_their_keys_and_grants():
    with curve_daemon("curve") as d:
        gate = add_source(d, "gate-1", "--schools", "sch-001")
        listed = d.request({"cmd": "source.list"})["sources"]
        assert [s["source"] for s in listed] == ["gate-1"] and "secret_key" not in listed[0]

        # An authenticated client is served; an omitted source is its own.
        s, _ = client(d, gate["public_key"], gate["secret_key"])
        env = {"type": "probe.event", "school": "sch-001", "id": "g-1", "data": {"n": 1}}
        r = send(s, env)
        assert r and r["ok"], r
        assert d.events("probe.event")[0]["source"] == "gate-1"
        # A spoofed source, and a school it was not granted, are forbidden, naming which.
        r = send(s, dict(env, id="g-2", source="fire-panel"))
        assert r["error"] == "forbidden" and r["detail"].startswith("source: this connection is "
                                                                    "authenticated as gate-1"), r
        r = send(s, dict(env, id="g-3", school="sch-002"))
        assert r["error"] == "forbidden" and r["detail"] == \
            "school: source gate-1 may not write for sch-002", r

        # No key, or an unknown key: the handshake fails and nothing is journaled.
        anon, mon = client(d)
        anon.send(json.dumps(dict(env, id="a-1", source="anon")).encode())
        assert handshake_failed(mon) and not anon.poll(300)
        pub, sec = zmq.curve_keypair()
        stranger, mon = client(d, pub, sec)
        stranger.send(json.dumps(dict(env, id="a-2", source="anon")).encode())
        assert handshake_failed(mon) and not stranger.poll(300)

        # A district grant covers the district's schools, once the directory knows them.
        office = add_source(d, "district-app", "--districts", "dist-01")
        o, _ = client(d, office["public_key"], office["secret_key"])
        for e in ({"type": "directory.district.upserted", "district": "dist-01",
                   "data": {"district": "dist-01", "name": "Lakeside"}},
                  {"type": "directory.school.upserted", "school": "sch-002",
                   "data": {"name": "Hillview", "district": "dist-01"}},
                  {"type": "probe.event", "school": "sch-002", "data": {"n": 2}}):
            r = send(o, e)
            assert r["ok"], (e, r)

        # Revoked: the open connection is refused at its next message, a new one at the handshake.
        r = d.ctl("source", "revoke", "gate-1")
        assert r.returncode == 0, r
        r = send(s, dict(env, id="g-4"))
        assert r["error"] == "forbidden" and "revoked" in r["detail"], r
        again, mon = client(d, gate["public_key"], gate["secret_key"])
        again.send(json.dumps(dict(env, id="g-5")).encode())
        assert handshake_failed(mon)

        stats = d.request({"cmd": "stats"})
        assert stats["forbidden_by"]["source_mismatch"] == 1, stats
        assert stats["forbidden_by"]["not_granted"] == 1, stats
        assert stats["forbidden_by"]["revoked"] == 1, stats
        assert [e["source_id"] for e in d.events("probe.event")] == ["g-1", None]
        for sock in (s, anon, stranger, o, again):
            sock.close(0)


def test_grants_can_change():
    with curve_daemon("grants") as d:
        gate = add_source(d, "gate-2", "--schools", "sch-001")
        s, _ = client(d, gate["public_key"], gate["secret_key"])
        env = {"type": "probe.event", "school": "sch-002", "data": {"n": 1}}
        assert send(s, env)["error"] == "forbidden"
        assert d.ctl("source", "grant", "gate-2", "--schools", "sch-002").returncode == 0
        assert send(s, env)["ok"]
        assert d.ctl("source", "ungrant", "gate-2", "--schools", "sch-002").returncode == 0
        assert send(s, env)["error"] == "forbidden"
        r = d.ctl("source", "add", "gate-2", "--schools", "sch-003")
        assert r.returncode == 1 and "already exists" in r.stdout, r
        s.close(0)


def test_publish_needs_a_listed_subscriber_key():
    sub_pub, sub_sec = zmq.curve_keypair()
    d = curve_daemon("pubcurve", 'publish: { endpoint = "tcp://127.0.0.1:%d"; curve = true; '
                                 'subscribers = [ "%s" ]; };' % (0, sub_pub.decode()))
    text = open(d.config_path).read()
    text = text.replace('publish: { endpoint = "tcp://127.0.0.1:%d"; };\n' % d.publish_port, "")
    text = text.replace('tcp://127.0.0.1:0"; curve', 'tcp://127.0.0.1:%d"; curve' % d.publish_port)
    open(d.config_path, "w").write(text)
    with d:
        gate = add_source(d, "gate-3", "--schools", "sch-001")
        good = CTX.socket(zmq.SUB)
        good.curve_publickey, good.curve_secretkey, good.curve_serverkey = sub_pub, sub_sec, d.server_public
        bad = CTX.socket(zmq.SUB)
        for sock in (good, bad):
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SUBSCRIBE, b"probe.")
            sock.connect("tcp://127.0.0.1:%d" % d.publish_port)
        time.sleep(0.5)
        s, _ = client(d, gate["public_key"], gate["secret_key"])
        assert send(s, {"type": "probe.event", "school": "sch-001", "data": {"n": 1}})["ok"]
        assert good.poll(5000) and good.recv_multipart()[0] == b"probe.event"
        assert not bad.poll(500)
        for sock in (good, bad, s):
            sock.close(0)


def test_safecampusctl_sends_as_a_source():
    with curve_daemon("ctlcurve") as d:
        gate = add_source(d, "gate-9", "--schools", "sch-001")
        keyfile = os.path.join(d.tmp, "gate-9.json")
        with open(keyfile, "w") as f:
            json.dump(gate, f)
        assert d.request({"cmd": "status"})["ingest_public_key"] == d.server_public.decode()
        r = d.ctl("send", "--as", keyfile, "probe.event", "--school", "sch-001", "n=1")
        assert r.returncode == 0 and json.loads(r.stdout)["ok"], r
        r = d.ctl("send", "--as", keyfile, "probe.event", "--school", "sch-002", "n=1")
        assert r.returncode == 1 and json.loads(r.stdout)["error"] == "forbidden", r
        assert [e["source"] for e in d.events("probe.event")] == ["gate-9"]


def test_key_as_a_systemd_credential():
    d = curve_daemon("credential")
    creds = os.path.join(d.tmp, "credentials")
    os.mkdir(creds, 0o700)
    os.rename(d.key_file, os.path.join(creds, "ingest.key"))
    text = open(d.config_path).read().replace('secret_key_file = "%s"' % d.key_file,
                                              'secret_key_file = "ingest.key"')
    open(d.config_path, "w").write(text)
    os.environ["CREDENTIALS_DIRECTORY"] = creds
    try:
        with d:
            gate = add_source(d, "gate-c", "--schools", "sch-001")
            s, _ = client(d, gate["public_key"], gate["secret_key"])
            assert send(s, {"type": "probe.event", "school": "sch-001", "data": {"n": 1}})["ok"]
            s.close(0)
    finally:
        del os.environ["CREDENTIALS_DIRECTORY"]


def test_key_file_readable_by_others_is_refused():
    d = curve_daemon("keymode")
    os.chmod(d.key_file, 0o644)
    d.create_database()
    try:
        d.start(wait=False)
        assert d.proc.wait(30) != 0
        assert "readable by others" in d.log(), d.log()
    finally:
        d.__exit__(None, None, None)


if __name__ == "__main__":
    main(globals())
