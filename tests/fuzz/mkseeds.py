#!/usr/bin/env python3
"""Regenerates the seed corpora of fuzz_envelope and fuzz_validators from the tests.

Envelopes (objects with a "type" string and a "data" object) are gathered from
tests/fixtures (JSON and JSON lines, nested anywhere), from the (type, data) tables
and envelope literals in tests/unit/*.c, and from the literal send()/envelope()
calls in tests/integration/*.py; tests/fuzz/seeds/extra.jsonl adds hand-written
ones for types the tests do not cover. At most PER_TYPE different data objects are
kept per type: when build/fuzz/fuzz_envelope is there, the ones it accepts first (up to
ACCEPTED), then refused ones (they reach other branches of the validator), smallest first
within each. Then:

  tests/fuzz/corpus/envelope/<type>-<n>.json     the envelope, compact
  tests/fuzz/corpus/validators/<type>-<n>.txt    "type school district" + newline + data

and for fuzz_config, in tests/fuzz/corpus/config/: sample.conf (config/safecampusd.conf),
sections-all.conf and section-<plugin>.conf (every plugin's section with its defaults, as
build/fuzz/fuzz_config prints them with SC_FUZZ_PRINT_SECTIONS=1), unit-<n>.conf (the config
texts in tests/unit/test_config.c).

tests/fuzz/dict/envelope.dict (= validators.dict): JSON punctuation, the envelope members,
and the short lowercase string literals of daemon/directory.c and plugins/*/*.c (type
names, field names, enum values).

Files of other names in those folders (the hand-written tricky inputs) are kept.
Run from the top of the tree: python3 tests/fuzz/mkseeds.py
"""

import ast
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

PER_TYPE = 6
ACCEPTED = 4
FUZZER = "build/fuzz/fuzz_envelope"
MAX_BYTES = 2900  # fuzz_envelope refuses frames over 3000 bytes
TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$(?<!\.json)")
GENERATED = re.compile(r"^[a-z0-9_.]+-\d+\.(json|txt)$")


def walk(v, out):
    """Every object with a type string and a data object, anywhere in v."""
    if isinstance(v, dict):
        if isinstance(v.get("type"), str) and isinstance(v.get("data"), dict) and TYPE_RE.match(v["type"]):
            out.append(v)
        for x in v.values():
            walk(x, out)
    elif isinstance(v, list):
        for x in v:
            walk(x, out)


def from_fixtures(out):
    for path in sorted(glob.glob("tests/fixtures/**/*.json*", recursive=True)):
        text = open(path, encoding="utf-8").read()
        try:
            walk(json.loads(text), out)
            continue
        except ValueError:
            pass
        for line in text.splitlines():
            try:
                walk(json.loads(line), out)
            except ValueError:
                pass


C_LITS = r'((?:"(?:[^"\\\n]|\\.)*"\s*)+)'
C_PAIR = re.compile(r'"([a-z_]+(?:\.[a-z_]+)+)"\s*,\s*' + C_LITS)
C_ENV = re.compile(C_LITS)


def c_string(lits):
    parts = re.findall(r'"((?:[^"\\\n]|\\.)*)"', lits)
    return "".join(bytes(p, "utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")
                   for p in parts)


def loose_json(s):
    try:
        return json.loads(s)
    except ValueError:
        if '"' not in s:
            try:
                return json.loads(s.replace("'", '"'))
            except ValueError:
                return None
    return None


def from_unit_tests(out):
    for path in sorted(glob.glob("tests/unit/test_*.c")):
        src = open(path, encoding="utf-8").read()
        for m in C_PAIR.finditer(src):
            data = loose_json(c_string(m.group(2)))
            if isinstance(data, dict):
                walk({"type": m.group(1), "data": data}, out)
        for m in C_ENV.finditer(src):
            s = c_string(m.group(1))
            if s.startswith("{") and '"type"' in s and "%" not in s:
                v = loose_json(s)
                if v is not None:
                    walk(v, out)


def from_integration(out):
    for path in sorted(glob.glob("tests/integration/*.py")):
        try:
            tree = ast.parse(open(path, encoding="utf-8").read())
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("send", "envelope") and len(node.args) >= 2:
                try:
                    t, data = ast.literal_eval(node.args[0]), ast.literal_eval(node.args[1])
                except (ValueError, SyntaxError, TypeError):
                    continue
                if isinstance(t, str) and isinstance(data, dict):
                    env = {"type": t, "data": data}
                    for kw in node.keywords:
                        try:
                            if kw.arg in ("school", "district", "source", "id", "actor", "occurred_at"):
                                env[kw.arg] = ast.literal_eval(kw.value)
                        except (ValueError, SyntaxError):
                            pass
                    out.append(env)
            elif isinstance(node, ast.Dict):
                try:
                    walk(ast.literal_eval(node), out)
                except (ValueError, SyntaxError, TypeError):
                    pass


def from_extra(out):
    path = "tests/fuzz/seeds/extra.jsonl"
    if os.path.exists(path):
        for line in open(path, encoding="utf-8"):
            line = line.strip()
            if line and not line.startswith("#"):
                walk(json.loads(line), out)


def normalise(e):
    env = {"type": e["type"]}
    if "school" in e or "district" not in e:
        env["school"] = e.get("school") or "sch-001"
    if "district" in e:
        env["district"] = e["district"]
    env["source"] = e.get("source") or "seed"
    for k in ("id", "actor", "occurred_at"):
        if isinstance(e.get(k), str):
            env[k] = e[k]
    env["data"] = e["data"]
    return env


def classify(envs):
    """Per envelope text, True when fuzz_envelope accepts it (None when it cannot tell)."""
    if not os.access(FUZZER, os.X_OK):
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, text in enumerate(envs):
            path = os.path.join(tmp, "%05d" % i)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            paths.append(path)
        out = subprocess.run([FUZZER] + paths, env=dict(os.environ, SC_FUZZ_VERBOSE="1"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).stderr
        verdict, current = {}, None
        for line in out.decode("utf-8", "replace").splitlines():
            if line.startswith("Running: "):
                current = int(os.path.basename(line[9:].strip()))
            elif line.startswith("fuzz_envelope: ") and current is not None:
                verdict[envs[current]] = line.split()[1] == "ok"
                current = None  # the first line: the plain parse, not the "(as …)" one
        return verdict


CONF_GENERATED = re.compile(r"^(sample|sections-all|section-[a-z_]+|unit-\d+)\.conf$")


def config_seeds():
    d = "tests/fuzz/corpus/config"
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if CONF_GENERATED.match(f):
            os.remove(os.path.join(d, f))
    seeds = {"sample": open("config/safecampusd.conf", encoding="utf-8").read()}
    fuzzer = "build/fuzz/fuzz_config"
    if os.access(fuzzer, os.X_OK):
        text = subprocess.run([fuzzer], env=dict(os.environ, SC_FUZZ_PRINT_SECTIONS="1"),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode()
        seeds["sections-all"] = text
        for m in re.finditer(r"^([a-z_]+): \{\n.*?^\};\n", text, re.S | re.M):
            seeds["section-" + m.group(1)] = m.group(0)
    src = open("tests/unit/test_config.c", encoding="utf-8").read()
    texts = [c_string(m.group(1)) for m in re.finditer(r"\{\s*" + C_LITS + r",\s*\"", src)]
    texts += [c_string(m.group(1)) for m in re.finditer(r"s_load\(\s*" + C_LITS, src)]
    for i, t in enumerate(dict.fromkeys(t for t in texts if "=" in t or ":" in t)):
        seeds["unit-%d" % i] = t
    for name, text in seeds.items():
        with open(os.path.join(d, name + ".conf"), "w", encoding="utf-8") as f:
            f.write(text)
    return len(seeds)


def dictionary():
    words = {'{', '}', '[', ']', ':', ',', '"', '\\', '\\u0000', '\\ud83d\\ude00', 'true', 'false', 'null',
             '-1', '0', '1e400', '9223372036854775808', '"type"', '"school"', '"district"', '"source"',
             '"id"', '"actor"', '"occurred_at"', '"data"', '2026-06-18T08:15:00+08:00', '2026-06-18',
             'FREQ=WEEKLY;BYDAY=MO', '15m', '7d'}
    lit = re.compile(r'"([a-z][a-z0-9_.:-]{1,40})"')
    for path in sorted(glob.glob("plugins/*/*.c")) + ["daemon/directory.c"]:
        for m in lit.finditer(open(path, encoding="utf-8").read()):
            if not m.group(1).endswith((".c", ".h", ".sql")):
                words.add(m.group(1))
    os.makedirs("tests/fuzz/dict", exist_ok=True)
    text = "# generated by tests/fuzz/mkseeds.py\n" + "".join(
        '"%s"\n' % w.replace("\\", "\\\\").replace('"', '\\"') for w in sorted(words))
    for name in ("envelope", "validators"):
        with open("tests/fuzz/dict/%s.dict" % name, "w", encoding="utf-8") as f:
            f.write(text)
    return len(words)


def main():
    found = []
    from_fixtures(found)
    from_unit_tests(found)
    from_integration(found)
    from_extra(found)
    by_type = {}
    for e in found:
        env = normalise(e)
        text = json.dumps(env, ensure_ascii=False, separators=(",", ":"))
        if len(text.encode()) > MAX_BYTES:
            continue
        seen = by_type.setdefault(env["type"], {})
        seen.setdefault(json.dumps(env["data"], sort_keys=True), env)
    for sub in ("envelope", "validators"):
        d = "tests/fuzz/corpus/" + sub
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            if GENERATED.match(f):
                os.remove(os.path.join(d, f))
    text_of = lambda e: json.dumps(e, ensure_ascii=False, separators=(",", ":"))
    ok = classify([text_of(e) for envs in by_type.values() for e in envs.values()])
    n = 0
    for t in sorted(by_type):
        envs = sorted(by_type[t].values(), key=lambda e: len(text_of(e)))
        good = [e for e in envs if ok.get(text_of(e))][:ACCEPTED]
        envs = (good + [e for e in envs if e not in good])[:PER_TYPE]
        for i, env in enumerate(envs):
            text = json.dumps(env, ensure_ascii=False, separators=(",", ":"))
            with open("tests/fuzz/corpus/envelope/%s-%d.json" % (t, i), "w", encoding="utf-8") as f:
                f.write(text)
            head = "%s %s %s" % (t, env.get("school", "-"), env.get("district", "-"))
            with open("tests/fuzz/corpus/validators/%s-%d.txt" % (t, i), "w", encoding="utf-8") as f:
                f.write(head + "\n" + json.dumps(env["data"], ensure_ascii=False, separators=(",", ":")))
            n += 1
    print("mkseeds: %d dictionary words" % dictionary(), file=sys.stderr)
    nconf = config_seeds()
    print("mkseeds: %d config seeds" % nconf, file=sys.stderr)
    print("mkseeds: %d seeds of %d types%s" % (n, len(by_type), "" if ok else
          " (" + FUZZER + " not built: accepted ones not preferred)"), file=sys.stderr)


if __name__ == "__main__":
    main()
